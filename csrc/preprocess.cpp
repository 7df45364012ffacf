// Pillow-exact bilinear resize + centre crop + scaling/layout, over a batch.
//
// Per image: the horizontal pass runs on the input rows that the kept output
// rows read, for the output columns the crop keeps, and is rounded to uint8
// (as Pillow does); the vertical pass then produces the kept rows, which are
// written straight into the batch tensor through a per-channel lookup table.
// Where Pillow runs the vertical pass first, so does this.
// All arithmetic is integer, so the result does not depend on vectorisation,
// thread count or the order of the sums.
#include "preprocess.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "parallel.hpp"

namespace instab::kernels {

namespace {

constexpr int kPrecisionBits = 22;  // Pillow: PRECISION_BITS = 32 - 8 - 2
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);
constexpr int64_t kMaxSide = 2147483647;  // positions are int32
constexpr int32_t kMaxAcc = (int32_t{1} << (kPrecisionBits + 8)) - 1;

// Pillow's bilinear (triangle) filter, support 1.
inline double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

// Pillow's clip8: >= 2^30 -> 255, <= 0 -> 0, else >> 22. Written branch-free
// so the loops that call it vectorise.
inline uint8_t clip8(int32_t v) {
    v = v < 0 ? 0 : v;
    v = v > kMaxAcc ? kMaxAcc : v;
    return static_cast<uint8_t>(v >> kPrecisionBits);
}

// floor(d / 2) + tie-break to even, i.e. Python's round(d / 2).
inline int64_t round_half_even_div2(int64_t d) {
    const int64_t fl = d >= 0 ? d / 2 : -((-d + 1) / 2);
    if (d % 2 == 0) return fl;
    return (fl % 2 == 0) ? fl : fl + 1;
}

// The hot loops are plain integer C++ that the compiler vectorises. Where the
// toolchain supports function multiversioning (GCC on x86-64 ELF), an AVX2
// clone is also built and picked at load time; integer results are identical.
// (Define INSTAB_SIMD_CLONES empty to build without, e.g. under sanitizers.)
#ifndef INSTAB_SIMD_CLONES
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define INSTAB_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define INSTAB_SIMD_CLONES
#endif
#endif

// Copies `nx` pixels of one row into lane `r * CP` of a transposed block whose
// columns are LS bytes apart. With CP == 3 four bytes are moved at a time; the
// extra byte lands on the next row's lane (rewritten when that row is copied)
// or, for the last row, on the block padding. The last pixel is copied
// exactly, so the source is never read past its end.
template <int CP, int CIN, int LS>
inline void transpose_row(const uint8_t* row, int64_t nx, uint8_t* t) {
    if constexpr (CP == 3 && (CIN == 3 || CIN == 4)) {
        for (int64_t x = 0; x + 1 < nx; ++x) std::memcpy(t + x * LS, row + x * CIN, 4);
        if (nx > 0) std::memcpy(t + (nx - 1) * LS, row + (nx - 1) * CIN, 3);
    } else {
        for (int64_t x = 0; x < nx; ++x) {
            for (int c = 0; c < CP; ++c) t[x * LS + c] = row[x * CIN + c];
        }
    }
}

// Horizontal pass over `nrows` rows starting at `src` (rows `src_stride` bytes
// apart, CIN channels per pixel, column 0 of `src` being input column
// `col_origin`), for the output columns held by `ch`, keeping the first CP
// channels. Rows are processed R at a time through a transposed block, so that
// for each output column the R*CP accumulators are updated by contiguous,
// vectorisable loops.
template <int CP, int CIN>
INSTAB_SIMD_CLONES void horizontal_pass(const uint8_t* src, int64_t src_stride, int64_t col_origin,
                                        int64_t nrows, const AxisCoeffs& ch, uint8_t* tmp, int64_t tmp_stride,
                                        std::vector<uint8_t>& block) {
    constexpr int R = CP == 3 ? 8 : 16;
    constexpr int L = R * CP;             // lanes in use
    constexpr int LS = CP == 3 ? 32 : L;  // block column stride (padding for the 4-byte copies)
    const int64_t xb = ch.in_begin, nx = ch.in_end - ch.in_begin;
    const int64_t nout = ch.out_end - ch.out_begin;
    const int ksize = ch.ksize;
    block.assign(static_cast<size_t>(nx * LS), 0);
    uint8_t* tb = block.data();
    for (int64_t rb = 0; rb < nrows; rb += R) {
        const int nr = static_cast<int>(std::min<int64_t>(R, nrows - rb));
        for (int r = 0; r < nr; ++r) {
            transpose_row<CP, CIN, LS>(src + (rb + r) * src_stride + (xb - col_origin) * CIN, nx, tb + r * CP);
        }
        for (int64_t j = 0; j < nout; ++j) {
            const int32_t* w = ch.weights.data() + j * ksize;
            const uint8_t* s0 = tb + (ch.first[j] - xb) * LS;
            const int n = ch.count[j];
            // All LS lanes are accumulated (padding included): whole vectors, no remainder.
            int32_t acc[LS];
            for (int l = 0; l < LS; ++l) acc[l] = kHalf;
            for (int t = 0; t < n; ++t) {
                const int32_t wt = w[t];
                const uint8_t* s = s0 + t * LS;
                for (int l = 0; l < LS; ++l) acc[l] += wt * static_cast<int32_t>(s[l]);
            }
            uint8_t out[LS];
            for (int l = 0; l < LS; ++l) out[l] = clip8(acc[l]);
            for (int r = 0; r < nr; ++r) {
                std::memcpy(tmp + (rb + r) * tmp_stride + j * CP, out + r * CP, CP);
            }
        }
    }
}

template <int CP>
void horizontal_pass_any(const uint8_t* src, int64_t src_stride, int64_t cin, int64_t col_origin, int64_t nrows,
                         const AxisCoeffs& ch, uint8_t* tmp, int64_t tmp_stride, std::vector<uint8_t>& block) {
    if constexpr (CP == 1) {
        (void)cin;  // grey input only
        horizontal_pass<1, 1>(src, src_stride, col_origin, nrows, ch, tmp, tmp_stride, block);
    } else if (cin == 4) {
        horizontal_pass<CP, 4>(src, src_stride, col_origin, nrows, ch, tmp, tmp_stride, block);
    } else if (cin == 3) {
        horizontal_pass<CP, 3>(src, src_stride, col_origin, nrows, ch, tmp, tmp_stride, block);
    } else {
        throw std::invalid_argument("images: an RGB pass needs 3 or 4 input channels");
    }
}

// Vertical pass for one output row: n taps on rows base, base + stride, ...
INSTAB_SIMD_CLONES void vertical_row(const uint8_t* base, int64_t stride, const int32_t* w, int n, int64_t len,
                                     uint8_t* out) {
    constexpr int B = 64;
    int64_t j = 0;
    for (; j + B <= len; j += B) {
        int32_t acc[B];
        for (int l = 0; l < B; ++l) acc[l] = kHalf;
        for (int t = 0; t < n; ++t) {
            const int32_t wt = w[t];
            const uint8_t* s = base + t * stride + j;
            for (int l = 0; l < B; ++l) acc[l] += wt * static_cast<int32_t>(s[l]);
        }
        for (int l = 0; l < B; ++l) out[j + l] = clip8(acc[l]);
    }
    for (; j < len; ++j) {
        int32_t a = kHalf;
        for (int t = 0; t < n; ++t) a += w[t] * static_cast<int32_t>(base[t * stride + j]);
        out[j] = clip8(a);
    }
}

// Writes one resized row (ncols pixels of CP channels) at output row y, column x0.
template <class T>
struct Writer {
    T* out;  // this image's output
    int64_t oh, ow;
    bool nchw;
    const float* lut;

    T value(int c, uint8_t v) const {
        if constexpr (std::is_same_v<T, float>) {
            return lut[c * 256 + v];
        } else {
            (void)c;
            return v;
        }
    }

    template <int CP>
    void row(const uint8_t* line, int64_t y, int64_t x0, int64_t ncols) const {
        constexpr int c1 = CP == 3 ? 1 : 0, c2 = CP == 3 ? 2 : 0;
        if (nchw) {
            const int64_t plane = oh * ow;
            T* d0 = out + y * ow + x0;
            T* d1 = d0 + plane;
            T* d2 = d1 + plane;
            for (int64_t x = 0; x < ncols; ++x) {
                const uint8_t* p = line + x * CP;
                d0[x] = value(0, p[0]);
                d1[x] = value(1, p[c1]);
                d2[x] = value(2, p[c2]);
            }
        } else {
            T* d = out + (y * ow + x0) * 3;
            for (int64_t x = 0; x < ncols; ++x) {
                const uint8_t* p = line + x * CP;
                d[3 * x + 0] = value(0, p[0]);
                d[3 * x + 1] = value(1, p[c1]);
                d[3 * x + 2] = value(2, p[c2]);
            }
        }
    }

    // Zero-level fill, for crop windows that overhang the resized image.
    void pad() const {
        const int64_t plane = oh * ow;
        for (int c = 0; c < 3; ++c) {
            const T v = value(c, 0);
            if (nchw) {
                std::fill(out + c * plane, out + (c + 1) * plane, v);
            } else {
                for (int64_t i = 0; i < plane; ++i) out[i * 3 + c] = v;
            }
        }
    }
};

struct Scratch {
    std::vector<uint8_t> block, tmp, mid, line;
};

inline int64_t round_up64(int64_t v) { return (v + 63) / 64 * 64; }

struct ImageJob {
    ResizePlan plan;
    const AxisCoeffs* ch = nullptr;  // null: width unchanged, no horizontal pass
    const AxisCoeffs* cv = nullptr;  // null: height unchanged, no vertical pass
};

template <int CP, class T>
void process_image(const ImageView& im, const ImageJob& job, const Writer<T>& wr, Scratch& s) {
    const ResizePlan& p = job.plan;
    const int64_t c0 = std::max<int64_t>(p.left, 0), c1 = std::min(p.left + wr.ow, p.resized_w);
    const int64_t d0 = std::max<int64_t>(p.top, 0), d1 = std::min(p.top + wr.oh, p.resized_h);
    if (c0 > p.left || c1 < p.left + wr.ow || d0 > p.top || d1 < p.top + wr.oh) wr.pad();
    if (c1 <= c0 || d1 <= d0) return;
    const int64_t ncols = c1 - c0, len = ncols * CP;
    if (job.ch && job.cv && p.resized_h < im.height && im.height - p.resized_h > 2 * (im.width - p.resized_w)) {
        // Pillow (>= 13) runs the vertical pass first when the height shrinks by
        // more than twice as many pixels as the width; rounding makes the order matter.
        const AxisCoeffs &ch = *job.ch, &cv = *job.cv;
        const int64_t vlen = (ch.in_end - ch.in_begin) * im.channels, vstride = round_up64(vlen);
        s.mid.resize(static_cast<size_t>((d1 - d0) * vstride));
        for (int64_t i = d0; i < d1; ++i) {
            const int64_t j = i - cv.out_begin;
            vertical_row(im.data + cv.first[j] * im.row_stride + ch.in_begin * im.channels, im.row_stride,
                         cv.weights.data() + j * cv.ksize, cv.count[j], vlen, s.mid.data() + (i - d0) * vstride);
        }
        const int64_t stride = round_up64(len);
        s.tmp.resize(static_cast<size_t>((d1 - d0) * stride));
        horizontal_pass_any<CP>(s.mid.data(), vstride, im.channels, ch.in_begin, d1 - d0, ch, s.tmp.data(), stride,
                            s.block);
        for (int64_t i = d0; i < d1; ++i) {
            wr.template row<CP>(s.tmp.data() + (i - d0) * stride, i - p.top, c0 - p.left, ncols);
        }
        return;
    }
    // Input rows that the kept output rows read.
    const int64_t r0 = job.cv ? job.cv->in_begin : d0;
    const int64_t r1 = job.cv ? job.cv->in_end : d1;

    // Horizontal pass (or the unchanged rows) -> rows [r0, r1) at `rows`.
    const uint8_t* rows;
    int64_t stride;
    if (job.ch) {
        stride = round_up64(len);
        s.tmp.resize(static_cast<size_t>((r1 - r0) * stride));
        horizontal_pass_any<CP>(im.data + r0 * im.row_stride, im.row_stride, im.channels, 0, r1 - r0, *job.ch,
                            s.tmp.data(), stride, s.block);
        rows = s.tmp.data();
    } else if (im.channels == CP) {
        stride = im.row_stride;
        rows = im.data + r0 * im.row_stride + c0 * CP;
    } else {  // RGBA with unchanged width: drop alpha
        stride = len;
        s.tmp.resize(static_cast<size_t>((r1 - r0) * stride));
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* src = im.data + r * im.row_stride + c0 * im.channels;
            uint8_t* d = s.tmp.data() + (r - r0) * stride;
            for (int64_t x = 0; x < ncols; ++x) {
                for (int c = 0; c < CP; ++c) d[x * CP + c] = src[x * im.channels + c];
            }
        }
        rows = s.tmp.data();
    }

    // Vertical pass, one kept output row at a time, written into the batch.
    s.line.resize(static_cast<size_t>(len));
    for (int64_t i = d0; i < d1; ++i) {
        const uint8_t* line;
        if (job.cv) {
            const AxisCoeffs& cv = *job.cv;
            const int64_t j = i - cv.out_begin;
            vertical_row(rows + (cv.first[j] - r0) * stride, stride, cv.weights.data() + j * cv.ksize,
                         cv.count[j], len, s.line.data());
            line = s.line.data();
        } else {
            line = rows + (i - r0) * stride;
        }
        wr.template row<CP>(line, i - p.top, c0 - p.left, ncols);
    }
}

void check_params(const PreprocessParams& prm, int64_t n) {
    if (n < 0) throw std::invalid_argument("images: negative batch size");
    if (prm.out_h < 1 || prm.out_w < 1) {
        throw std::invalid_argument("size: must be at least 1x1, got " + std::to_string(prm.out_h) + "x" +
                                    std::to_string(prm.out_w));
    }
    if (prm.short_side < 1 || prm.short_side > kMaxSide) {
        throw std::invalid_argument("short_side: must be in 1..2^31-1, got " + std::to_string(prm.short_side));
    }
}

template <class T>
void run(const ImageView* images, int64_t n, const PreprocessParams& prm, T* out, int threads) {
    check_params(prm, n);
    for (int64_t i = 0; i < n; ++i) {
        const ImageView& im = images[i];
        const std::string name = "images[" + std::to_string(i) + "]";
        if (!im.data || im.height < 1 || im.width < 1) {
            throw std::invalid_argument(name + ": must be at least 1x1, got " + std::to_string(im.height) + "x" +
                                        std::to_string(im.width));
        }
        if (im.channels != 1 && im.channels != 3 && im.channels != 4) {
            throw std::invalid_argument(name + ": expected 1, 3 or 4 channels, got " +
                                        std::to_string(im.channels));
        }
        if (im.row_stride < im.width * im.channels) {
            throw std::invalid_argument(name + ": row stride smaller than a row");
        }
    }

    // Filter weights once per distinct (input size, resized size, crop size) of
    // each axis; the crop size fixes which output positions are needed.
    std::vector<ImageJob> jobs(static_cast<size_t>(n));
    std::map<std::array<int64_t, 3>, AxisCoeffs> cache;
    auto coeffs_for = [&](int64_t in, int64_t resized, int64_t crop, int64_t start) -> const AxisCoeffs* {
        if (in == resized) return nullptr;
        auto key = std::array<int64_t, 3>{in, resized, crop};
        auto it = cache.find(key);
        if (it == cache.end()) {
            const int64_t b = std::max<int64_t>(start, 0), e = std::min(start + crop, resized);
            it = cache.emplace(key, bilinear_coeffs(in, resized, b, std::max(b, e))).first;
        }
        return &it->second;
    };
    for (int64_t i = 0; i < n; ++i) {
        ImageJob& job = jobs[static_cast<size_t>(i)];
        job.plan = plan_resize(images[i].height, images[i].width, prm.short_side, prm.out_h, prm.out_w);
        job.ch = coeffs_for(images[i].width, job.plan.resized_w, prm.out_w, job.plan.left);
        job.cv = coeffs_for(images[i].height, job.plan.resized_h, prm.out_h, job.plan.top);
    }

    const int64_t per_image = prm.out_h * prm.out_w * 3;
    // Images differ in size, and on a busy machine a worker may stall: workers
    // take the next image from a shared counter. Each image's output depends only
    // on that image, so the result is the same whichever worker computes it.
    std::atomic<int64_t> next{0};
    const int workers = chunk_count(n, threads);
    parallel_for(workers, workers, [&](int64_t, int64_t) {
        Scratch scratch;
        for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
            Writer<T> wr{out + i * per_image, prm.out_h, prm.out_w, prm.nchw, prm.lut};
            if (images[i].channels == 1) {
                process_image<1>(images[i], jobs[static_cast<size_t>(i)], wr, scratch);
            } else {
                process_image<3>(images[i], jobs[static_cast<size_t>(i)], wr, scratch);
            }
        }
    });
}

}  // namespace

AxisCoeffs bilinear_coeffs(int64_t in_size, int64_t out_size, int64_t out_begin, int64_t out_end) {
    if (in_size < 1 || out_size < 1 || out_begin < 0 || out_end > out_size || out_begin > out_end) {
        throw std::invalid_argument("bilinear_coeffs: bad sizes");
    }
    AxisCoeffs c;
    c.in_size = in_size;
    c.out_size = out_size;
    c.out_begin = out_begin;
    c.out_end = out_end;
    // Pillow computes the box in float and the scale in double.
    const float in0 = 0.0f, in1 = static_cast<float>(in_size);
    const double scale = static_cast<double>(in1 - in0) / static_cast<double>(out_size);
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale;
    const double ss = 1.0 / filterscale;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    const int64_t nout = out_end - out_begin;
    c.first.resize(static_cast<size_t>(nout));
    c.count.resize(static_cast<size_t>(nout));
    c.weights.assign(static_cast<size_t>(nout * c.ksize), 0);
    std::vector<double> k(static_cast<size_t>(c.ksize));
    c.in_begin = in_size;
    c.in_end = 0;
    for (int64_t xx = out_begin; xx < out_end; ++xx) {
        const double center = in0 + (static_cast<double>(xx) + 0.5) * scale;
        int64_t xmin = static_cast<int64_t>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = static_cast<int64_t>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int64_t x = 0; x < xmax; ++x) {
            const double w = bilinear_filter((static_cast<double>(x + xmin) - center + 0.5) * ss);
            k[static_cast<size_t>(x)] = w;
            ww += w;
        }
        const int64_t j = xx - out_begin;
        int32_t* kk = c.weights.data() + j * c.ksize;
        for (int64_t x = 0; x < xmax; ++x) {
            double v = k[static_cast<size_t>(x)];
            if (ww != 0.0) v /= ww;
            // normalize_coeffs_8bpc: round half away from zero to 22-bit fixed point
            const double f = v * static_cast<double>(1 << kPrecisionBits);
            kk[x] = static_cast<int32_t>(v < 0 ? -0.5 + f : 0.5 + f);
        }
        c.first[static_cast<size_t>(j)] = static_cast<int32_t>(xmin);
        c.count[static_cast<size_t>(j)] = static_cast<int32_t>(xmax);
        c.in_begin = std::min(c.in_begin, xmin);
        c.in_end = std::max(c.in_end, xmin + xmax);
    }
    if (c.in_end < c.in_begin) c.in_begin = c.in_end = 0;
    return c;
}

ResizePlan plan_resize(int64_t height, int64_t width, int64_t short_side, int64_t out_h, int64_t out_w) {
    ResizePlan p;
    // torchvision's rule: new_long = int(new_short * long / short), in double.
    const int64_t shorter = std::min(height, width), longer = std::max(height, width);
    // Every size in 1..2^31-1 also keeps the products and differences below in int64.
    for (const int64_t v : {short_side, height, width, out_h, out_w}) {
        if (v < 1 || v > kMaxSide) {
            throw std::invalid_argument("plan_resize: sizes must be in 1..2^31-1, got " + std::to_string(height) + "x" +
                                        std::to_string(width) + " -> short side " + std::to_string(short_side) +
                                        ", crop " + std::to_string(out_h) + "x" + std::to_string(out_w));
        }
    }
    const double longd = static_cast<double>(short_side * longer) / static_cast<double>(shorter);
    if (!(longd < 2147483647.0)) {
        throw std::invalid_argument("images: a " + std::to_string(height) + "x" + std::to_string(width) +
                                    " image would be resized beyond 2^31 pixels on its longer side");
    }
    const int64_t new_long = static_cast<int64_t>(longd);
    if (width <= height) {
        p.resized_w = short_side;
        p.resized_h = new_long;
    } else {
        p.resized_h = short_side;
        p.resized_w = new_long;
    }
    p.top = round_half_even_div2(p.resized_h - out_h);
    p.left = round_half_even_div2(p.resized_w - out_w);
    return p;
}

void preprocess_u8(const ImageView* images, int64_t n, const PreprocessParams& params, uint8_t* out,
                   int threads) {
    run(images, n, params, out, threads);
}

void preprocess_f32(const ImageView* images, int64_t n, const PreprocessParams& params, float* out,
                    int threads) {
    if (!params.lut) throw std::invalid_argument("lut: float32 output needs a lookup table");
    run(images, n, params, out, threads);
}

}  // namespace instab::kernels
