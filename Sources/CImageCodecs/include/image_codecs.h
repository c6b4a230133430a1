// A small C layer over libpng's and libjpeg's classic APIs. Both libraries report errors by calling a
// function that must not return; here that function longjmps back into the entry point (Swift cannot use
// setjmp/longjmp), so every failure becomes a status code plus a message instead of abort() or exit().
//
// Reading is split in two so the caller can refuse an oversized image after the header and before it
// allocates the pixel buffer: *_read_header fills ic_image_info, then *_read_pixels decodes into the
// caller's buffer of height rows of width * channels bytes.
#ifndef IMAGE_CODECS_H
#define IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    IC_OK = 0,
    IC_ERR_CORRUPT = 1,      // the library rejected the data (bad chunk, bad marker, bad CRC, ...)
    IC_ERR_TRUNCATED = 2,    // the data ended before the image did
    IC_ERR_UNSUPPORTED = 3,  // valid, but a kind we do not decode (e.g. a JPEG colour space we cannot convert)
    IC_ERR_NO_MEMORY = 4,
    IC_ERR_USAGE = 5,        // wrong call order or arguments
};

/// What the header says, after the conversions the reader applies (8-bit samples, palette expanded).
typedef struct {
    uint32_t width;
    uint32_t height;
    int channels;          // samples per pixel in the decoded output: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int source_bit_depth;  // bits per sample in the file (PNG: 1, 2, 4, 8, 16; JPEG: 8 or 12)
    int source_channels;   // samples per pixel in the file (PNG palette: 1; JPEG CMYK: 4)
} ic_image_info;

/// Resource limits of the readers (docs/model-folder.md and the README's security section list them with the
/// image size limits of the Swift layer). A file that breaks one is refused or, for text, has the entry skipped.
enum {
    /// PNG: the most bytes libpng buffers for one ancillary chunk (raw, or inflated as for iCCP); libpng's
    /// own default, set explicitly so it cannot change under us.
    IC_PNG_CHUNK_MAX_BYTES = 8000000,
    /// PNG: the most ancillary chunks libpng keeps (sPLT and the like; text is kept by this layer instead).
    IC_PNG_CHUNK_CACHE_MAX = 128,
    /// PNG: a compressed text chunk (zTXt, compressed iTXt) that inflates past this is skipped.
    IC_PNG_TEXT_MAX_INFLATED = 1 << 20,
    /// PNG: text chunks read (kept or skipped), and the bytes of the entries kept; chunks past either are
    /// skipped unread (the first "parameters" entry, the one Paella reads, is read regardless, subject to the
    /// per-chunk limit).
    IC_PNG_TEXT_MAX_ENTRIES = 64,
    IC_PNG_TEXT_MAX_TOTAL = 4 << 20,
    /// JPEG: the most scans a file may have (a progressive photo has about 10; libjpeg-turbo's own fuzzers
    /// stop at 500). Each scan is a pass over the image, so this bounds decoding time.
    IC_JPEG_MAX_SCANS = 100,
    /// JPEG: the most 8x8 blocks all scans together may cover (each scan visits every block of its components):
    /// 2^25, what libjpeg's standard 10-scan progression needs for the largest progressive image the memory
    /// limit admits (about 2.7 times what a 100-megapixel photo needs); about 2 s of decoding.
    IC_JPEG_MAX_SCAN_BLOCKS = 1 << 25,
};

/// JPEG: the most memory libjpeg may use for one image (a progressive or multi-scan file keeps every DCT
/// coefficient of the image: 2 bytes per sample); larger needs are refused before decoding starts.
#define IC_JPEG_MAX_MEMORY ((long)768 << 20)

/// Frees memory returned by this library (encoded files).
void ic_free(void *pointer);

// MARK: PNG

typedef struct ic_png_reader ic_png_reader;

/// A reader over `size` bytes at `data`, which must stay valid until ic_png_reader_destroy. NULL when out of memory.
ic_png_reader *ic_png_reader_create(const uint8_t *data, size_t size);
void ic_png_reader_destroy(ic_png_reader *reader);
/// The last error, as one line of text ("" when none).
const char *ic_png_reader_message(const ic_png_reader *reader);
/// Reads the chunks before the image data. Output: 8-bit samples (16-bit keeps the high byte, like PIL's
/// RGB;16B), palette expanded to RGB, low-bit gray expanded to 8 bits, tRNS turned into an alpha channel.
/// No gamma or colour-profile conversion (PIL applies none either).
int ic_png_read_header(ic_png_reader *reader, ic_image_info *info);
/// Asks for the image shrunk by `factor` (1, 2, 4 or 8) on each side, each output pixel the average of a
/// factor x factor block (edge blocks of what there is): `info` gets the output size, ceil(side / factor).
/// Interlaced images need the whole image in memory anyway and are not shrunk (the factor becomes 1).
/// Returns the factor in effect. Call between ic_png_read_header and ic_png_read_pixels.
int ic_png_set_reduction(ic_png_reader *reader, int factor, ic_image_info *info);
/// Decodes the image into `pixels` (height rows, `row_stride` bytes apart) and reads the text chunks after it.
int ic_png_read_pixels(ic_png_reader *reader, uint8_t *pixels, size_t row_stride);
/// The text chunks (tEXt, zTXt, iTXt) seen so far; after ic_png_read_pixels, all of them.
int ic_png_text_count(const ic_png_reader *reader);
/// Text entry `index`: key (NUL-terminated, Latin-1), value bytes and length; `is_utf8` is 1 for iTXt
/// (UTF-8) and 0 for tEXt/zTXt (Latin-1).
int ic_png_text_at(const ic_png_reader *reader, int index, const char **key, const char **text,
                   size_t *text_length, int *is_utf8);

typedef struct ic_png_writer ic_png_writer;

ic_png_writer *ic_png_writer_create(void);
void ic_png_writer_destroy(ic_png_writer *writer);
const char *ic_png_writer_message(const ic_png_writer *writer);
/// Adds a text chunk written before the image data: tEXt (`utf8` = 0, key and text Latin-1) or iTXt
/// (`utf8` = 1, text UTF-8). Both strings are copied; neither may contain NUL.
int ic_png_writer_add_text(ic_png_writer *writer, const char *key, const char *text, int utf8);
/// Encodes 8-bit pixels with 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels. On success `*out` holds
/// `*out_size` bytes of PNG file that the caller releases with ic_free.
int ic_png_writer_encode(ic_png_writer *writer, const uint8_t *pixels, uint32_t width, uint32_t height,
                         int channels, size_t row_stride, int compression_level,
                         uint8_t **out, size_t *out_size);

// MARK: JPEG

typedef struct ic_jpeg_reader ic_jpeg_reader;

ic_jpeg_reader *ic_jpeg_reader_create(const uint8_t *data, size_t size);
void ic_jpeg_reader_destroy(ic_jpeg_reader *reader);
const char *ic_jpeg_reader_message(const ic_jpeg_reader *reader);
/// Reads the markers up to the first scan. Output channels: 1 for grayscale, 3 for everything else
/// (YCbCr and RGB decode to RGB; CMYK and YCCK are converted to RGB the way PIL does).
int ic_jpeg_read_header(ic_jpeg_reader *reader, ic_image_info *info);
/// Asks libjpeg to decode at 1/`factor` of the size (1, 2, 4 or 8; its DCT scaling, far cheaper than decoding
/// in full and resizing): `info` gets the output size, ceil(side / factor). Returns the factor in effect.
int ic_jpeg_set_reduction(ic_jpeg_reader *reader, int factor, ic_image_info *info);
/// Decodes the image (libjpeg defaults: islow DCT, fancy upsampling, like PIL) into `pixels`.
/// A file that ends early gives IC_ERR_TRUNCATED (libjpeg itself would only warn and pad with gray).
int ic_jpeg_read_pixels(ic_jpeg_reader *reader, uint8_t *pixels, size_t row_stride);

/// Encodes 8-bit pixels with 1 (gray), 3 (RGB) or 4 (CMYK, stored as given, with an Adobe marker) channels
/// at `quality` (1...100) into a baseline JPEG, or, with `progressive_bands` 1...63, a progressive one whose
/// scans are the DC coefficients and then, per component, the 63 AC coefficients in that many bands
/// (1 + components x bands scans). Used by tests to make JPEG input; `*out` is released with ic_free.
/// `message` receives up to `message_capacity` bytes of error text.
int ic_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, size_t row_stride,
                   int quality, int progressive_bands, uint8_t **out, size_t *out_size, char *message,
                   size_t message_capacity);

#ifdef __cplusplus
}
#endif

#endif
