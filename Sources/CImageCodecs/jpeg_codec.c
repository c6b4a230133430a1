// JPEG through libjpeg(-turbo)'s classic API, with an error manager that longjmps instead of calling exit()
// (see include/image_codecs.h). State that must survive a longjmp lives in the heap-allocated reader struct.
#include "image_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

struct error_manager {
    struct jpeg_error_mgr pub;  // first, so a j_common_ptr's err can be cast to this struct
    jmp_buf jump;
    int truncated;
    char message[JMSG_LENGTH_MAX];
};

static void error_exit(j_common_ptr cinfo) {
    struct error_manager *e = (struct error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void emit_message(j_common_ptr cinfo, int level) {
    struct error_manager *e = (struct error_manager *)cinfo->err;
    if (level < 0) {
        cinfo->err->num_warnings++;
        // libjpeg pads a file that ends early, or whose entropy data stops at a marker, with gray and only warns.
        // Both are errors here, raised at once: decoding on would fill the rest of a header's size (up to the
        // pixel limit) from nothing, seconds of work for a 100-byte file (found by fuzzing:
        // Tests/Fixtures/hostile/fuzz-jpeg-padded.jpg). Other warnings (extraneous bytes) stay harmless.
        int code = cinfo->err->msg_code;
        if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
            e->truncated = code == JWRN_JPEG_EOF;
            (*cinfo->err->format_message)(cinfo, e->message);
            longjmp(e->jump, 1);
        }
    }
}

static void output_nothing(j_common_ptr cinfo) { (void)cinfo; }

static void install_errors(struct error_manager *e, struct jpeg_error_mgr **slot) {
    *slot = jpeg_std_error(&e->pub);
    e->pub.error_exit = error_exit;
    e->pub.emit_message = emit_message;
    e->pub.output_message = output_nothing;
}

// MARK: Reader

// Counts the scans libjpeg starts and stops at IC_JPEG_MAX_SCANS (libjpeg calls this between passes and
// every so many rows; input_scan_number is the scan being read).
struct scan_limit {
    struct jpeg_progress_mgr pub;
    int too_many_scans;
    int counted_scan;      // the last scan whose blocks were added
    long long blocks;      // 8x8 blocks covered by the scans so far
};

static void count_scans(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    struct scan_limit *limit = (struct scan_limit *)cinfo->progress;
    struct error_manager *e = (struct error_manager *)cinfo->err;
    if (d->input_scan_number > limit->counted_scan) {  // cur_comp_info is the scan just started
        limit->counted_scan = d->input_scan_number;
        for (int i = 0; i < d->comps_in_scan && i < MAX_COMPS_IN_SCAN; i++) {
            const jpeg_component_info *c = d->cur_comp_info[i];
            if (c) limit->blocks += (long long)c->width_in_blocks * (long long)c->height_in_blocks;
        }
    }
    if (d->input_scan_number > IC_JPEG_MAX_SCANS) {
        limit->too_many_scans = 1;
        snprintf(e->message, sizeof e->message, "it has more than %d scans, the most this reader decodes",
                 IC_JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
    if (limit->blocks > IC_JPEG_MAX_SCAN_BLOCKS) {
        limit->too_many_scans = 1;
        snprintf(e->message, sizeof e->message,
                 "its %d scans cover more than %d blocks in all, more than this reader decodes", d->input_scan_number,
                 IC_JPEG_MAX_SCAN_BLOCKS);
        longjmp(e->jump, 1);
    }
}

struct ic_jpeg_reader {
    struct jpeg_decompress_struct cinfo;
    struct error_manager errors;
    struct scan_limit scans;
    int created;
    int header_done;
    int pixels_done;
    const uint8_t *data;
    size_t size;
    uint8_t *cmyk_row;
    ic_image_info image;
};

ic_jpeg_reader *ic_jpeg_reader_create(const uint8_t *data, size_t size) {
    ic_jpeg_reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->data = data;
    r->size = size;
    return r;
}

void ic_jpeg_reader_destroy(ic_jpeg_reader *r) {
    if (!r) return;
    if (r->created) jpeg_destroy_decompress(&r->cinfo);
    free(r->cmyk_row);
    free(r);
}

const char *ic_jpeg_reader_message(const ic_jpeg_reader *r) { return r->errors.message; }

static int jpeg_failure(ic_jpeg_reader *r) {
    if (r->scans.too_many_scans) return IC_ERR_UNSUPPORTED;
    // libjpeg-turbo's memory manager has no backing store: an image whose coefficients need more than
    // max_memory_to_use stops with JERR_NO_BACKING_STORE.
    if (r->errors.pub.msg_code == JERR_NO_BACKING_STORE) {
        snprintf(r->errors.message, sizeof r->errors.message,
                 "decoding it would need more than the %ld MiB this reader allows a JPEG (a progressive or multi-scan "
                 "JPEG keeps the whole image's coefficients in memory)", IC_JPEG_MAX_MEMORY >> 20);
        return IC_ERR_UNSUPPORTED;
    }
    if (r->errors.truncated) return IC_ERR_TRUNCATED;
    // A 12- or 16-bit JPEG is valid, just not something an 8-bit libjpeg build decodes.
    if (r->errors.pub.msg_code == JERR_BAD_PRECISION) return IC_ERR_UNSUPPORTED;
    return IC_ERR_CORRUPT;
}

int ic_jpeg_read_header(ic_jpeg_reader *r, ic_image_info *out) {
    if (r->header_done) return IC_ERR_USAGE;
    install_errors(&r->errors, &r->cinfo.err);
    if (setjmp(r->errors.jump)) return jpeg_failure(r);
    jpeg_create_decompress(&r->cinfo);
    r->created = 1;
    r->cinfo.mem->max_memory_to_use = IC_JPEG_MAX_MEMORY;
    r->scans.pub.progress_monitor = count_scans;
    r->cinfo.progress = &r->scans.pub;
    jpeg_mem_src(&r->cinfo, r->data, (unsigned long)r->size);
    jpeg_read_header(&r->cinfo, TRUE);

    int channels;
    switch (r->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: channels = 1; break;
    case JCS_YCbCr:
    case JCS_RGB:
    case JCS_CMYK:
    case JCS_YCCK: channels = 3; break;
    default:
        snprintf(r->errors.message, sizeof r->errors.message,
                 "the JPEG colour space (%d components, libjpeg code %d) has no known conversion to RGB",
                 r->cinfo.num_components, (int)r->cinfo.jpeg_color_space);
        return IC_ERR_UNSUPPORTED;
    }
    r->image.width = r->cinfo.image_width;
    r->image.height = r->cinfo.image_height;
    r->image.channels = channels;
    r->image.source_bit_depth = r->cinfo.data_precision;
    r->image.source_channels = r->cinfo.num_components;
    r->header_done = 1;
    *out = r->image;
    return IC_OK;
}

int ic_jpeg_set_reduction(ic_jpeg_reader *r, int factor, ic_image_info *out) {
    if (!r->header_done || r->pixels_done) return IC_ERR_USAGE;
    if (factor != 1 && factor != 2 && factor != 4 && factor != 8) factor = 1;
    if (setjmp(r->errors.jump)) return 1;
    r->cinfo.scale_num = 1;
    r->cinfo.scale_denom = (unsigned int)factor;
    // output_components depends on out_color_space: set it as read_pixels will before computing the size.
    int cmyk = r->cinfo.jpeg_color_space == JCS_CMYK || r->cinfo.jpeg_color_space == JCS_YCCK;
    r->cinfo.out_color_space = r->image.channels == 1 ? JCS_GRAYSCALE : (cmyk ? JCS_CMYK : JCS_RGB);
    jpeg_calc_output_dimensions(&r->cinfo);
    r->image.width = r->cinfo.output_width;
    r->image.height = r->cinfo.output_height;
    *out = r->image;
    return factor;
}

// (a * b) / 255 with rounding, as PIL's MULDIV255 computes it.
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int ic_jpeg_read_pixels(ic_jpeg_reader *r, uint8_t *pixels, size_t row_stride) {
    if (!r->header_done || r->pixels_done) return IC_ERR_USAGE;
    const ic_image_info *im = &r->image;
    if (row_stride < (size_t)im->width * (size_t)im->channels) return IC_ERR_USAGE;
    int cmyk = r->cinfo.jpeg_color_space == JCS_CMYK || r->cinfo.jpeg_color_space == JCS_YCCK;
    if (cmyk) {
        r->cmyk_row = malloc((size_t)im->width * 4);
        if (!r->cmyk_row) return IC_ERR_NO_MEMORY;
    }
    if (setjmp(r->errors.jump)) return jpeg_failure(r);

    r->cinfo.out_color_space = im->channels == 1 ? JCS_GRAYSCALE : (cmyk ? JCS_CMYK : JCS_RGB);
    jpeg_start_decompress(&r->cinfo);
    if (r->cinfo.output_width != im->width || r->cinfo.output_height != im->height ||
        r->cinfo.output_components != (cmyk ? 4 : im->channels)) {
        snprintf(r->errors.message, sizeof r->errors.message, "libjpeg produced an unexpected row layout");
        return IC_ERR_UNSUPPORTED;
    }
    while (r->cinfo.output_scanline < r->cinfo.output_height) {
        uint8_t *row = pixels + (size_t)r->cinfo.output_scanline * row_stride;
        JSAMPROW target = cmyk ? r->cmyk_row : row;
        jpeg_read_scanlines(&r->cinfo, &target, 1);
        if (!cmyk) continue;
        // PIL reads every 4-component JPEG as Adobe-inverted CMYK ("CMYK;I"): the stored sample is 255 - ink.
        // Its CMYK -> RGB conversion is then R = (255 - K) - C * (255 - K) / 255 per channel, which with
        // the stored values s = 255 - ink is (255 - K) - (255 - sC) * (255 - K) / 255.
        const uint8_t *s = r->cmyk_row;
        for (uint32_t x = 0; x < im->width; x++, s += 4) {
            int nk = s[3];  // 255 - K
            for (int c = 0; c < 3; c++) {
                int v = nk - muldiv255(255 - s[c], nk);
                row[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    jpeg_finish_decompress(&r->cinfo);
    r->pixels_done = 1;
    return IC_OK;
}

// MARK: Encoder (for tests and tools that need JPEG input)

struct jpeg_encoder {
    struct jpeg_compress_struct cinfo;
    struct error_manager errors;
    unsigned char *buffer;
    unsigned long size;
};

int ic_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, size_t row_stride,
                   int quality, int progressive_bands, uint8_t **out, size_t *out_size, char *message,
                   size_t message_capacity) {
    if ((channels != 1 && channels != 3 && channels != 4) || width == 0 || height == 0 ||
        row_stride < (size_t)width * (size_t)channels || progressive_bands < 0 || progressive_bands > 63) {
        if (message_capacity) snprintf(message, message_capacity, "invalid JPEG encoder arguments");
        return IC_ERR_USAGE;
    }
    struct jpeg_encoder *e = calloc(1, sizeof *e);
    if (!e) return IC_ERR_NO_MEMORY;
    e->cinfo.err = jpeg_std_error(&e->errors.pub);
    e->errors.pub.error_exit = error_exit;
    e->errors.pub.emit_message = emit_message;
    e->errors.pub.output_message = output_nothing;
    if (setjmp(e->errors.jump)) {
        if (message_capacity) snprintf(message, message_capacity, "%s", e->errors.message);
        jpeg_destroy_compress(&e->cinfo);
        free(e->buffer);
        free(e);
        return IC_ERR_CORRUPT;
    }
    jpeg_create_compress(&e->cinfo);
    jpeg_mem_dest(&e->cinfo, &e->buffer, &e->size);
    e->cinfo.image_width = width;
    e->cinfo.image_height = height;
    e->cinfo.input_components = channels;
    e->cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : channels == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&e->cinfo);
    jpeg_set_quality(&e->cinfo, quality, TRUE);
    jpeg_scan_info scans[1 + 4 * 63];
    if (progressive_bands > 0) {
        // One interleaved DC scan, then each component's AC coefficients 1...63 in `progressive_bands` bands.
        int n = 0, components = e->cinfo.num_components;
        scans[n++] = (jpeg_scan_info){.comps_in_scan = components, .component_index = {0, 1, 2, 3}, .Ss = 0, .Se = 0};
        for (int c = 0; c < components; c++) {
            for (int b = 0; b < progressive_bands; b++) {
                int first = 1 + 63 * b / progressive_bands, last = 63 * (b + 1) / progressive_bands;
                scans[n++] = (jpeg_scan_info){.comps_in_scan = 1, .component_index = {c}, .Ss = first, .Se = last};
            }
        }
        e->cinfo.scan_info = scans;
        e->cinfo.num_scans = n;
    }
    jpeg_start_compress(&e->cinfo, TRUE);
    while (e->cinfo.next_scanline < e->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)e->cinfo.next_scanline * row_stride);
        jpeg_write_scanlines(&e->cinfo, &row, 1);
    }
    jpeg_finish_compress(&e->cinfo);
    jpeg_destroy_compress(&e->cinfo);
    *out = e->buffer;
    *out_size = e->size;
    free(e);
    return IC_OK;
}
