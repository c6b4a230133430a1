// PNG through libpng's classic API, with setjmp/longjmp error handling (see include/image_codecs.h).
// State that must survive a longjmp lives in the heap-allocated reader/writer struct, never in locals.
#include "image_codecs.h"

#include <png.h>
#include <setjmp.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ic_free(void *pointer) { free(pointer); }

// MARK: Reader

// A text entry kept by this layer (libpng is told to pass text chunks to `read_text_chunk` instead of
// storing them, so their size and number stay bounded).
typedef struct {
    char key[80];
    char *text;
    size_t length;
    int utf8;
} text_entry;

struct ic_png_reader {
    jmp_buf jump;
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size;
    size_t position;
    int truncated;
    int header_done;
    int pixels_done;
    int reduction;      // 1, or the side of the pixel blocks averaged into one output pixel
    uint32_t source_width, source_height;
    ic_image_info image;
    png_bytep *rows;
    uint8_t *row;       // one source row, when reducing
    uint32_t *sums;     // one output row of per-sample sums, when reducing
    text_entry texts[IC_PNG_TEXT_MAX_ENTRIES + 1];  // + 1: room for "parameters" past the entry limit
    int text_count;
    int text_attempts;  // keyword-valid text chunks seen: each may cost an inflate, so they count towards the limit
    size_t text_bytes;
    char message[256];
};

static void reader_error(png_structp png, png_const_charp text) {
    ic_png_reader *r = (ic_png_reader *)png_get_error_ptr(png);
    snprintf(r->message, sizeof r->message, "%s", text);
    longjmp(r->jump, 1);
}

static void quiet_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;  // Ancillary-chunk problems (a bad CRC on tEXt, an unknown sRGB profile) are not fatal.
}

static void read_bytes(png_structp png, png_bytep out, size_t count) {
    ic_png_reader *r = (ic_png_reader *)png_get_io_ptr(png);
    if (count > r->size - r->position) {
        r->truncated = 1;
        png_error(png, "the data ends before the image does");
    }
    memcpy(out, r->data + r->position, count);
    r->position += count;
}

ic_png_reader *ic_png_reader_create(const uint8_t *data, size_t size) {
    ic_png_reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->data = data;
    r->size = size;
    return r;
}

void ic_png_reader_destroy(ic_png_reader *r) {
    if (!r) return;
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    free(r->rows);
    free(r->row);
    free(r->sums);
    for (int i = 0; i < r->text_count; i++) free(r->texts[i].text);
    free(r);
}

// MARK: Text chunks

// The zlib stream `in` inflated into a new buffer of at most IC_PNG_TEXT_MAX_INFLATED bytes; NULL when it is
// larger, corrupt or memory runs out (the entry is then skipped: text is never worth failing an image for).
static char *inflate_text(const uint8_t *in, size_t in_size, size_t *out_size) {
    char *out = malloc(IC_PNG_TEXT_MAX_INFLATED + 1);
    if (!out) return NULL;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        free(out);
        return NULL;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_size;
    z.next_out = (Bytef *)out;
    z.avail_out = IC_PNG_TEXT_MAX_INFLATED;
    int status = inflate(&z, Z_FINISH);
    size_t produced = IC_PNG_TEXT_MAX_INFLATED - z.avail_out;
    inflateEnd(&z);
    if (status != Z_STREAM_END) {  // too large (Z_BUF_ERROR with no room left), truncated or corrupt
        free(out);
        return NULL;
    }
    out[produced] = 0;
    *out_size = produced;
    return out;
}

static const uint8_t *find_nul(const uint8_t *p, const uint8_t *end) {
    const uint8_t *q = memchr(p, 0, (size_t)(end - p));
    return q ? q : NULL;
}

// Parses a tEXt, zTXt or iTXt chunk and keeps it within the limits; returns 1 (handled) for those, 0 for other
// chunks (which libpng then discards, as told by png_set_keep_unknown_chunks).
static int read_text_chunk(png_structp png, png_unknown_chunkp chunk) {
    ic_png_reader *r = (ic_png_reader *)png_get_user_chunk_ptr(png);
    const char *name = (const char *)chunk->name;
    int is_text = memcmp(name, "tEXt", 4) == 0, is_ztxt = memcmp(name, "zTXt", 4) == 0,
        is_itxt = memcmp(name, "iTXt", 4) == 0;
    if (!is_text && !is_ztxt && !is_itxt) return 0;
    const uint8_t *p = chunk->data, *end = chunk->data + chunk->size;
    if (!p) return 1;
    const uint8_t *key_end = find_nul(p, end);
    size_t key_length = key_end ? (size_t)(key_end - p) : 0;
    if (key_length < 1 || key_length > 79) return 1;  // not a valid keyword: skip
    int wanted = key_length == 10 && memcmp(p, "parameters", 10) == 0;
    for (int i = 0; i < r->text_count; i++) {
        if (strlen(r->texts[i].key) == key_length && memcmp(r->texts[i].key, p, key_length) == 0) return 1;  // keep the first
    }
    // Chunks count when seen, kept or not: a file of a thousand chunks that each inflate just past the limit
    // would otherwise cost a thousand inflates.
    if (!wanted && (r->text_attempts >= IC_PNG_TEXT_MAX_ENTRIES || r->text_bytes >= IC_PNG_TEXT_MAX_TOTAL)) return 1;
    if (r->text_count >= IC_PNG_TEXT_MAX_ENTRIES + 1) return 1;
    if (!wanted) r->text_attempts += 1;

    const uint8_t *value = key_end + 1;
    int compressed = 0, utf8 = 0;
    if (is_ztxt) {
        if (value >= end || *value != 0) return 1;  // compression method 0 (zlib) is the only one
        value += 1;
        compressed = 1;
    } else if (is_itxt) {
        if (end - value < 2 || value[1] != 0) return 1;
        compressed = value[0] != 0;
        const uint8_t *language_end = find_nul(value + 2, end);
        if (!language_end) return 1;
        const uint8_t *translated_end = find_nul(language_end + 1, end);
        if (!translated_end) return 1;
        value = translated_end + 1;
        utf8 = 1;
    }
    size_t length = (size_t)(end - value);
    char *text;
    if (compressed) {
        text = inflate_text(value, length, &length);
        if (!text) return 1;
    } else {
        if (length > IC_PNG_TEXT_MAX_INFLATED) return 1;
        text = malloc(length + 1);
        if (!text) return 1;
        memcpy(text, value, length);
        text[length] = 0;
    }
    if (!wanted && r->text_bytes + length > IC_PNG_TEXT_MAX_TOTAL) {
        free(text);
        return 1;
    }
    text_entry *e = &r->texts[r->text_count++];
    memcpy(e->key, p, key_length);
    e->key[key_length] = 0;
    e->text = text;
    e->length = length;
    e->utf8 = utf8;
    r->text_bytes += length;
    return 1;
}

const char *ic_png_reader_message(const ic_png_reader *r) { return r->message; }

static int reader_failure(ic_png_reader *r) { return r->truncated ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT; }

int ic_png_read_header(ic_png_reader *r, ic_image_info *out) {
    if (r->header_done) return IC_ERR_USAGE;
    if (r->size < 8 || png_sig_cmp(r->data, 0, 8) != 0) {
        snprintf(r->message, sizeof r->message, "the PNG signature is missing");
        return r->size < 8 ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT;
    }
    // libpng allocates an ancillary chunk's declared length before reading its data, so a header claiming 2 GB
    // of text would be allocated from a tiny file (found by fuzzing: Tests/Fixtures/hostile/fuzz-png-huge-chunk.png).
    // The whole file is in memory: every chunk up to IEND must fit in what is left of it.
    for (size_t at = 8; at < r->size;) {
        if (r->size - at < 12) break;  // a cut chunk header: libpng reports the truncation
        const uint8_t *c = r->data + at;
        size_t length = (size_t)c[0] << 24 | (size_t)c[1] << 16 | (size_t)c[2] << 8 | c[3];
        if (length > r->size - at - 12) {
            snprintf(r->message, sizeof r->message, "the chunk at byte %zu claims %zu bytes, more than the file holds",
                     at, length);
            return IC_ERR_TRUNCATED;
        }
        if (memcmp(c + 4, "IEND", 4) == 0) break;
        at += 12 + length;
    }
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, reader_error, quiet_warning);
    if (!r->png) return IC_ERR_NO_MEMORY;
    r->info = png_create_info_struct(r->png);
    if (!r->info) return IC_ERR_NO_MEMORY;
    if (setjmp(r->jump)) return reader_failure(r);

    png_set_read_fn(r->png, r, read_bytes);
    // Size limits are the caller's policy, applied after this header is read; lift libpng's own default
    // (1e6 px per side) so a too-large image is reported as such rather than as a corrupt file.
    png_set_user_limits(r->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_chunk_malloc_max(r->png, IC_PNG_CHUNK_MAX_BYTES);
    png_set_chunk_cache_max(r->png, IC_PNG_CHUNK_CACHE_MAX);
    // Text chunks come to read_text_chunk raw (libpng would inflate every compressed one whole, up to the chunk
    // limit, and keep up to the cache limit of them); colour profiles and suggested palettes are never used, so
    // they are dropped unparsed instead of inflated.
    static const png_byte handled_here[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT";
    png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_NEVER, handled_here, 5);
    png_set_read_user_chunk_fn(r->png, r, read_text_chunk);
    png_read_info(r->png, r->info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(r->png, r->info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    int has_trns = png_get_valid(r->png, r->info, PNG_INFO_tRNS) != 0;
    int channels = 0, source_channels = 0;
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: source_channels = 1; channels = has_trns ? 2 : 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: source_channels = 2; channels = 2; break;
    case PNG_COLOR_TYPE_PALETTE: source_channels = 1; channels = has_trns ? 4 : 3; break;
    case PNG_COLOR_TYPE_RGB: source_channels = 3; channels = has_trns ? 4 : 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: source_channels = 4; channels = 4; break;
    default:
        snprintf(r->message, sizeof r->message, "unknown PNG colour type %d", color_type);
        return IC_ERR_CORRUPT;
    }
    r->image.width = width;
    r->image.height = height;
    r->source_width = width;
    r->source_height = height;
    r->reduction = 1;
    r->image.channels = channels;
    r->image.source_bit_depth = bit_depth;
    r->image.source_channels = source_channels;
    r->header_done = 1;
    *out = r->image;
    return IC_OK;
}

int ic_png_set_reduction(ic_png_reader *r, int factor, ic_image_info *out) {
    if (!r->header_done || r->pixels_done) return IC_ERR_USAGE;
    if (factor != 1 && factor != 2 && factor != 4 && factor != 8) factor = 1;
    if (png_get_interlace_type(r->png, r->info) != PNG_INTERLACE_NONE) factor = 1;
    r->reduction = factor;
    r->image.width = (uint32_t)(((uint64_t)r->source_width + (uint64_t)factor - 1) / (uint64_t)factor);
    r->image.height = (uint32_t)(((uint64_t)r->source_height + (uint64_t)factor - 1) / (uint64_t)factor);
    *out = r->image;
    return factor;
}

// Reads the image row by row, averaging each factor x factor block into one output pixel, so memory holds one
// source row and one row of sums instead of the whole source image.
static void read_reduced(ic_png_reader *r, uint8_t *pixels, size_t row_stride) {
    const int f = r->reduction, channels = r->image.channels;
    const size_t out_samples = (size_t)r->image.width * (size_t)channels;
    for (uint32_t oy = 0; oy < r->image.height; oy++) {
        memset(r->sums, 0, out_samples * sizeof *r->sums);
        uint32_t y0 = oy * (uint32_t)f, rows = r->source_height - y0 < (uint32_t)f ? r->source_height - y0 : (uint32_t)f;
        for (uint32_t k = 0; k < rows; k++) {
            png_read_row(r->png, r->row, NULL);
            const uint8_t *sample = r->row;
            uint32_t *sum = r->sums;
            for (uint32_t x0 = 0; x0 < r->source_width; x0 += (uint32_t)f, sum += channels) {
                uint32_t cols = r->source_width - x0 < (uint32_t)f ? r->source_width - x0 : (uint32_t)f;
                for (uint32_t x = 0; x < cols; x++) {
                    for (int c = 0; c < channels; c++) sum[c] += *sample++;
                }
            }
        }
        uint8_t *target = pixels + (size_t)oy * row_stride;
        for (uint32_t ox = 0; ox < r->image.width; ox++) {
            uint32_t x0 = ox * (uint32_t)f, cols = r->source_width - x0 < (uint32_t)f ? r->source_width - x0 : (uint32_t)f;
            uint32_t count = cols * rows;
            for (int c = 0; c < channels; c++) {
                size_t i = (size_t)ox * (size_t)channels + (size_t)c;
                target[i] = (uint8_t)((r->sums[i] + count / 2) / count);
            }
        }
    }
}

int ic_png_read_pixels(ic_png_reader *r, uint8_t *pixels, size_t row_stride) {
    if (!r->header_done || r->pixels_done) return IC_ERR_USAGE;
    const ic_image_info *im = &r->image;
    if (row_stride < (size_t)im->width * (size_t)im->channels) return IC_ERR_USAGE;
    if (r->reduction > 1) {
        r->row = malloc((size_t)r->source_width * (size_t)im->channels);
        r->sums = malloc((size_t)im->width * (size_t)im->channels * sizeof *r->sums);
        if (!r->row || !r->sums) return IC_ERR_NO_MEMORY;
    } else {
        r->rows = malloc(sizeof(png_bytep) * (im->height ? im->height : 1));
        if (!r->rows) return IC_ERR_NO_MEMORY;
        for (uint32_t y = 0; y < im->height; y++) r->rows[y] = pixels + (size_t)y * row_stride;
    }
    if (setjmp(r->jump)) return reader_failure(r);

    png_byte color_type = png_get_color_type(r->png, r->info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r->png);
    if (color_type == PNG_COLOR_TYPE_GRAY && im->source_bit_depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
    if (png_get_valid(r->png, r->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(r->png);
    if (im->source_bit_depth == 16) png_set_strip_16(r->png);
    (void)png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    if (png_get_channels(r->png, r->info) != im->channels || png_get_bit_depth(r->png, r->info) != 8 ||
        png_get_rowbytes(r->png, r->info) != (size_t)r->source_width * (size_t)im->channels) {
        snprintf(r->message, sizeof r->message, "libpng produced an unexpected row layout");
        return IC_ERR_UNSUPPORTED;
    }
    if (r->reduction > 1) read_reduced(r, pixels, row_stride); else png_read_image(r->png, r->rows);
    // Text chunks may also follow the image data; passing the same info struct collects them with the rest.
    png_read_end(r->png, r->info);
    r->pixels_done = 1;
    return IC_OK;
}

int ic_png_text_count(const ic_png_reader *r) { return r->text_count; }

int ic_png_text_at(const ic_png_reader *r, int index, const char **key, const char **text,
                   size_t *text_length, int *is_utf8) {
    if (index < 0 || index >= r->text_count) return IC_ERR_USAGE;
    const text_entry *e = &r->texts[index];
    *key = e->key;
    *text = e->text;
    *text_length = e->length;
    *is_utf8 = e->utf8;
    return IC_OK;
}

// MARK: Writer

struct ic_png_writer {
    jmp_buf jump;
    png_structp png;
    png_infop info;
    png_bytep *rows;
    png_text *texts;
    int text_count;
    uint8_t *buffer;
    size_t size;
    size_t capacity;
    char message[256];
};

static void writer_error(png_structp png, png_const_charp text) {
    ic_png_writer *w = (ic_png_writer *)png_get_error_ptr(png);
    snprintf(w->message, sizeof w->message, "%s", text);
    longjmp(w->jump, 1);
}

static void write_bytes(png_structp png, png_bytep data, size_t count) {
    ic_png_writer *w = (ic_png_writer *)png_get_io_ptr(png);
    if (count > w->capacity - w->size) {
        size_t capacity = w->capacity ? w->capacity : 65536;
        while (count > capacity - w->size) capacity *= 2;
        uint8_t *grown = realloc(w->buffer, capacity);
        if (!grown) png_error(png, "out of memory while encoding the PNG");
        w->buffer = grown;
        w->capacity = capacity;
    }
    memcpy(w->buffer + w->size, data, count);
    w->size += count;
}

static void flush_nothing(png_structp png) { (void)png; }

ic_png_writer *ic_png_writer_create(void) { return calloc(1, sizeof(ic_png_writer)); }

static void release_encoder(ic_png_writer *w) {
    if (w->png) png_destroy_write_struct(&w->png, w->info ? &w->info : NULL);
    w->png = NULL;
    w->info = NULL;
    free(w->rows);
    w->rows = NULL;
}

void ic_png_writer_destroy(ic_png_writer *w) {
    if (!w) return;
    release_encoder(w);
    for (int i = 0; i < w->text_count; i++) {
        free(w->texts[i].key);
        free(w->texts[i].text);
    }
    free(w->texts);
    free(w->buffer);
    free(w);
}

const char *ic_png_writer_message(const ic_png_writer *w) { return w->message; }

int ic_png_writer_add_text(ic_png_writer *w, const char *key, const char *text, int utf8) {
    png_text *grown = realloc(w->texts, sizeof(png_text) * (size_t)(w->text_count + 1));
    if (!grown) return IC_ERR_NO_MEMORY;
    w->texts = grown;
    png_text *e = &w->texts[w->text_count];
    memset(e, 0, sizeof *e);
    e->key = strdup(key);
    e->text = strdup(text);
    if (!e->key || !e->text) {
        free(e->key);
        free(e->text);
        return IC_ERR_NO_MEMORY;
    }
    e->compression = utf8 ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
    if (utf8) e->itxt_length = strlen(text); else e->text_length = strlen(text);
    w->text_count += 1;
    return IC_OK;
}

int ic_png_writer_encode(ic_png_writer *w, const uint8_t *pixels, uint32_t width, uint32_t height,
                         int channels, size_t row_stride, int compression_level,
                         uint8_t **out, size_t *out_size) {
    static const int color_types[5] = {-1, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                       PNG_COLOR_TYPE_RGB_ALPHA};
    if (channels < 1 || channels > 4 || width == 0 || height == 0 ||
        row_stride < (size_t)width * (size_t)channels || w->png) {
        snprintf(w->message, sizeof w->message, "invalid PNG encoder arguments");
        return IC_ERR_USAGE;
    }
    w->size = 0;
    w->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, writer_error, quiet_warning);
    if (!w->png) return IC_ERR_NO_MEMORY;
    w->info = png_create_info_struct(w->png);
    w->rows = malloc(sizeof(png_bytep) * height);
    if (!w->info || !w->rows) {
        release_encoder(w);
        return IC_ERR_NO_MEMORY;
    }
    for (uint32_t y = 0; y < height; y++) w->rows[y] = (png_bytep)(pixels + (size_t)y * row_stride);
    if (setjmp(w->jump)) {
        release_encoder(w);
        return IC_ERR_CORRUPT;
    }
    png_set_write_fn(w->png, w, write_bytes, flush_nothing);
    png_set_compression_level(w->png, compression_level);
    png_set_IHDR(w->png, w->info, width, height, 8, color_types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    // Text set before png_write_info goes out right after IHDR, ahead of the image data.
    if (w->text_count > 0) png_set_text(w->png, w->info, w->texts, w->text_count);
    png_write_info(w->png, w->info);
    png_write_image(w->png, w->rows);
    png_write_end(w->png, NULL);
    release_encoder(w);
    *out = w->buffer;
    *out_size = w->size;
    w->buffer = NULL;
    w->size = 0;
    w->capacity = 0;
    return IC_OK;
}
