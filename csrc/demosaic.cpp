#include "demosaic.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <tmmintrin.h>  // SSSE3, used only where the CPU has it (checked at run time)
#endif

#include "parallel.hpp"

namespace instab::kernels {
namespace {

// Mirror an index into [0, n) without repeating the edge (reflect-101); the
// period 2n-2 is even, so the parity (the Bayer colour) is kept.
inline int64_t mirror(int64_t i, int64_t n) {
    const int64_t period = 2 * n - 2;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

constexpr int64_t kPad = 3;  // mosaic columns mirrored on each side (HA's green needs x +- 3)

// Mosaic rows with kPad mirrored columns each side, computed on demand into a
// ring of 8 keyed by their mirrored index (a row needs at most 7 consecutive ones).
template <class T>
class PaddedRows {
public:
    PaddedRows(const T* m, int64_t h, int64_t w)
        : m_(m), h_(h), w_(w), len_(w + 2 * kPad), buf_(static_cast<size_t>(8 * len_), T{0}) {
        for (auto& t : tag_) t = -1;
    }

    const T* row(int64_t r) {  // points at column 0; columns -kPad .. w-1+kPad are valid
        const int64_t sy = mirror(r, h_);
        const int slot = static_cast<int>(sy & 7);
        T* dst = buf_.data() + slot * len_ + kPad;
        if (tag_[slot] != sy) {
            const T* src = m_ + sy * w_;
            std::copy(src, src + w_, dst);
            for (int64_t x = -kPad; x < 0; ++x) dst[x] = src[mirror(x, w_)];
            for (int64_t x = w_; x < w_ + kPad; ++x) dst[x] = src[mirror(x, w_)];
            tag_[slot] = sy;
        }
        return dst;
    }

private:
    const T* m_;
    int64_t h_, w_, len_;
    std::vector<T> buf_;
    int64_t tag_[8];
};

inline int32_t iabs(int32_t v) { return v < 0 ? -v : v; }

// Hamilton-Adams green times 8 (exact: the estimates are quarters, their mean
// eighths), clipped to [0, 8 * peak], for columns -1 .. w of a row whose mosaic
// rows y-2 .. y+2 are p[0..4]; green pixels give 8 * themselves.
template <class T>
void ha_green_row(const T* const* p, int64_t w, const int* colours, int32_t peak8, int32_t* g8) {
    for (int64_t x = -1; x <= w; ++x) {
        const int32_t c = p[2][x];
        if (colours[x & 1] == 1) {
            g8[x] = 8 * c;
            continue;
        }
        const int32_t wv = p[2][x - 1], ev = p[2][x + 1], nv = p[1][x], sv = p[3][x];
        const int32_t lap_h = 2 * c - int32_t{p[2][x - 2]} - p[2][x + 2], lap_v = 2 * c - int32_t{p[0][x]} - p[4][x];
        const int32_t grad_h = iabs(wv - ev) + iabs(lap_h), grad_v = iabs(nv - sv) + iabs(lap_v);
        const int32_t est_h = 2 * (wv + ev) + lap_h, est_v = 2 * (nv + sv) + lap_v;  // 4x the estimates
        const int32_t v = grad_h < grad_v ? 2 * est_h : (grad_v < grad_h ? 2 * est_v : est_h + est_v);
        g8[x] = std::min(std::max(v, 0), peak8);
    }
}

// The numerators of one pixel's three channels over Den (see demosaic.hpp).
struct Px {
    int32_t v[3];
};

// Integer output: half up, clipped to [0, peak]; float: num / den rounded once.
template <class T, int Shift>
inline void emit(const Px& px, T* oi, float* of) {
    if (of) {
        for (int k = 0; k < 3; ++k) of[k] = static_cast<float>(static_cast<double>(px.v[k]) / (1 << Shift));
        return;
    }
    constexpr int32_t peak = std::numeric_limits<T>::max();
    for (int k = 0; k < 3; ++k) {
        const int32_t q = (px.v[k] + (1 << (Shift - 1))) >> Shift;  // arithmetic shift: floor
        oi[k] = static_cast<T>(std::min(std::max(q, 0), peak));
    }
}

// One row's pixels of one parity (colour col; a green's horizontal neighbours
// are hch), from x_begin on: p[0..4] are padded mosaic rows y-2 .. y+2, g[0..2]
// HA green rows y-1 .. y+1.
template <class T>
void scalar_parity(Demosaic method, const T* const* p, const int32_t* const* g, int64_t x_begin, int64_t w,
                   int col, int hch, T* oi, float* of) {
    const int vch = 2 - hch;
    for (int64_t x = x_begin; x < w; x += 2) {
        const int32_t c = p[2][x], n = p[1][x], s = p[3][x], wv = p[2][x - 1], ev = p[2][x + 1];
        const int32_t nw = p[1][x - 1], ne = p[1][x + 1], sw = p[3][x - 1], se = p[3][x + 1];
        const int32_t diag = (nw + ne) + (sw + se), cross = (n + s) + (wv + ev);
        T* o = oi ? oi + 3 * x : nullptr;
        float* f = of ? of + 3 * x : nullptr;
        Px px;
        if (method == Demosaic::Bilinear) {  // over 4
            if (col == 1) {
                px.v[1] = 4 * c, px.v[hch] = 2 * (wv + ev), px.v[vch] = 2 * (n + s);
            } else {
                px.v[1] = cross, px.v[col] = 4 * c, px.v[2 - col] = diag;
            }
            emit<T, 2>(px, o, f);
        } else if (method == Demosaic::Malvar) {  // over 16
            const int32_t hh = int32_t{p[2][x - 2]} + p[2][x + 2], vv = int32_t{p[0][x]} + p[4][x];
            if (col == 1) {
                px.v[1] = 16 * c;
                px.v[hch] = 10 * c + 8 * (wv + ev) - 2 * diag - 2 * hh + vv;
                px.v[vch] = 10 * c + 8 * (n + s) - 2 * diag - 2 * vv + hh;
            } else {
                px.v[1] = 8 * c + 4 * cross - 2 * (hh + vv);
                px.v[col] = 16 * c;
                px.v[2 - col] = 12 * c + 4 * diag - 3 * (hh + vv);
            }
            emit<T, 4>(px, o, f);
        } else {  // Hamilton-Adams, over 32; g rows hold 8x green
            const int32_t gc = g[1][x];
            if (col == 1) {
                px.v[1] = 32 * c;
                px.v[hch] = 4 * gc + 2 * ((8 * wv - g[1][x - 1]) + (8 * ev - g[1][x + 1]));
                px.v[vch] = 4 * gc + 2 * ((8 * n - g[0][x]) + (8 * s - g[2][x]));
            } else {
                const int32_t lap1 = 2 * gc - g[0][x + 1] - g[2][x - 1];  // ne - sw diagonal
                const int32_t lap2 = 2 * gc - g[0][x - 1] - g[2][x + 1];  // nw - se diagonal
                const int32_t grad1 = 8 * iabs(ne - sw) + iabs(lap1), grad2 = 8 * iabs(nw - se) + iabs(lap2);
                const int32_t est1 = 8 * (ne + sw) + lap1, est2 = 8 * (nw + se) + lap2;  // 16x the estimates
                px.v[1] = 4 * gc;
                px.v[col] = 32 * c;
                px.v[2 - col] = grad1 < grad2 ? 2 * est1 : (grad2 < grad1 ? 2 * est2 : est1 + est2);
            }
            emit<T, 5>(px, o, f);
        }
    }
}

#if defined(__SSE2__)
// ---- Bilinear in 16-byte vectors (uint8 or uint16 lanes): every mean is an
// exact rounded average built from _mm_avg (which rounds half up); the
// channels are interleaved into RGB by SSSE3 byte shuffles.
template <class T>
struct BayerSimd;

template <>
struct BayerSimd<uint16_t> {
    static constexpr int64_t L = 8;
    static __m128i load(const uint16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
    static __m128i avg(__m128i a, __m128i b) { return _mm_avg_epu16(a, b); }
    static __m128i sub(__m128i a, __m128i b) { return _mm_sub_epi16(a, b); }
    static __m128i one() { return _mm_set1_epi16(1); }
    static __m128i even_lanes() { return _mm_set1_epi32(0xFFFF); }
};

template <>
struct BayerSimd<uint8_t> {
    static constexpr int64_t L = 16;
    static __m128i load(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
    static __m128i avg(__m128i a, __m128i b) { return _mm_avg_epu8(a, b); }
    static __m128i sub(__m128i a, __m128i b) { return _mm_sub_epi8(a, b); }
    static __m128i one() { return _mm_set1_epi8(1); }
    static __m128i even_lanes() { return _mm_set1_epi16(0xFF); }
};

// floor((a + b + c + d + 2) / 4) without widening: with m1 = avg(a, b) and
// m2 = avg(c, d) (each rounded up when odd), avg(m1, m2) is one too high
// exactly when m1 + m2 is odd and either pair's sum was odd.
template <class S>
inline __m128i avg4(__m128i a, __m128i b, __m128i c, __m128i d) {
    const __m128i m1 = S::avg(a, b), m2 = S::avg(c, d);
    const __m128i odd = _mm_or_si128(_mm_xor_si128(a, b), _mm_xor_si128(c, d));
    return S::sub(S::avg(m1, m2), _mm_and_si128(_mm_and_si128(_mm_xor_si128(m1, m2), odd), S::one()));
}

// The source of channel ch at a pixel of colour col whose horizontal neighbours
// have colour hcol: 0 the pixel, 1 horizontal mean, 2 vertical, 3 cross of
// four, 4 diagonal four.
constexpr int bilinear_source(int col, int hcol, int ch) {
    if (col == 1) return ch == 1 ? 0 : (ch == hcol ? 1 : 2);
    return ch == 1 ? 3 : (ch == col ? 0 : 4);
}

// The three channel vectors of the L pixels from column x (even) of a bilinear
// row whose colours are C0, C1 at even, odd columns.
template <class T, int C0, int C1>
inline void bilinear_block(const T* a, const T* b, const T* c, int64_t x, __m128i ch[3]) {
    using S = BayerSimd<T>;
    const __m128i n = S::load(a + x), s = S::load(c + x), wv = S::load(b + x - 1), ev = S::load(b + x + 1);
    __m128i src[5];
    src[0] = S::load(b + x);
    src[1] = S::avg(wv, ev);
    src[2] = S::avg(n, s);
    // The cross of four from the two pair means already taken (see avg4).
    const __m128i odd = _mm_or_si128(_mm_xor_si128(n, s), _mm_xor_si128(wv, ev));
    src[3] = S::sub(S::avg(src[1], src[2]),
                    _mm_and_si128(_mm_and_si128(_mm_xor_si128(src[1], src[2]), odd), S::one()));
    src[4] = avg4<S>(S::load(a + x - 1), S::load(c + x - 1), S::load(a + x + 1), S::load(c + x + 1));
    const __m128i even = S::even_lanes();
    for (int k = 0; k < 3; ++k) {  // sources known at compile time: all in registers
        const __m128i e = src[bilinear_source(C0, C1, k)], o = src[bilinear_source(C1, C0, k)];
        ch[k] = _mm_or_si128(_mm_and_si128(even, e), _mm_andnot_si128(even, o));
    }
}

// With SSSE3 (nearly every x86-64 since 2006, checked at run time), the three
// channel vectors interleave into three full vectors by byte shuffles.
// masks[v][ch]: for output vector v, the byte of channel ch's vector each lane takes (-128: none).
template <int E>  // bytes per element
struct InterleaveMasks {
    int8_t m[3][3][16];
    InterleaveMasks() {
        for (int v = 0; v < 3; ++v) {
            for (int l = 0; l < 16; ++l) {
                const int p = 16 * v + l, q = p / E;
                for (int ch = 0; ch < 3; ++ch) m[v][ch][l] = static_cast<int8_t>(q % 3 == ch ? (q / 3) * E + p % E : -128);
            }
        }
    }
};

// Pixels 0 .. of one bilinear row in vectors (reading columns -1 .. x + L) while
// the reads stay in the row; returns the first pixel not written (even).
template <class T, int C0, int C1>
__attribute__((target("ssse3"))) int64_t bilinear_ssse3_row(const T* a, const T* b, const T* c, int64_t w, T* o) {
    static const InterleaveMasks<sizeof(T)> masks;
    __m128i mk[3][3];
    for (int v = 0; v < 3; ++v) {
        for (int ch = 0; ch < 3; ++ch) mk[v][ch] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(masks.m[v][ch]));
    }
    constexpr int64_t L = BayerSimd<T>::L;
    int64_t x = 0;
    for (; x + L <= w - 1; x += L) {
        __m128i ch[3];
        bilinear_block<T, C0, C1>(a, b, c, x, ch);
        __m128i* dst = reinterpret_cast<__m128i*>(o + 3 * x);
        for (int v = 0; v < 3; ++v) {
            const __m128i r = _mm_shuffle_epi8(ch[0], mk[v][0]), g = _mm_shuffle_epi8(ch[1], mk[v][1]);
            _mm_storeu_si128(dst + v, _mm_or_si128(_mm_or_si128(r, g), _mm_shuffle_epi8(ch[2], mk[v][2])));
        }
    }
    return x;
}

// The row kinds of a Bayer pattern: (R, G), (G, R), (B, G), (G, B) at even, odd columns.
template <class T>
int64_t bilinear_ssse3_dispatch(const T* a, const T* b, const T* c, int64_t w, const int* colours, T* o) {
    switch (colours[0] * 3 + colours[1]) {
        case 0 * 3 + 1: return bilinear_ssse3_row<T, 0, 1>(a, b, c, w, o);
        case 1 * 3 + 0: return bilinear_ssse3_row<T, 1, 0>(a, b, c, w, o);
        case 2 * 3 + 1: return bilinear_ssse3_row<T, 2, 1>(a, b, c, w, o);
        default: return bilinear_ssse3_row<T, 1, 2>(a, b, c, w, o);  // (G, B); check_bayer allows no other
    }
}
#endif

// One bilinear pixel read straight from the mosaic rows a, b, c (y-1, y, y+1,
// already mirrored), columns mirrored here: for the pixels the vectors leave.
template <class T>
inline void bilinear_pixel(const T* a, const T* b, const T* c, int64_t x, int64_t w, const int* colours, T* o) {
    const int64_t xl = mirror(x - 1, w), xr = mirror(x + 1, w);
    const int32_t ctr = b[x], n = a[x], s = c[x], wv = b[xl], ev = b[xr];
    const int col = colours[x & 1], hch = colours[1 - (x & 1)];
    Px px;
    if (col == 1) {
        px.v[1] = 4 * ctr, px.v[hch] = 2 * (wv + ev), px.v[2 - hch] = 2 * (n + s);
    } else {
        px.v[1] = (n + s) + (wv + ev), px.v[col] = 4 * ctr;
        px.v[2 - col] = (int32_t{a[xl]} + a[xr]) + (int32_t{c[xl]} + c[xr]);
    }
    emit<T, 2>(px, o + 3 * x, nullptr);
}

// A bilinear row to integers with no padded copies: vectors from column 2 on
// (their reads stay inside the row), single pixels for the rest.
template <class T>
void bilinear_row(const T* a, const T* b, const T* c, int64_t w, const int* colours, T* o) {
    int64_t x_end = 0;
#if defined(__SSE2__)
    // Without SSSE3 (x86-64 CPUs from before 2006) every pixel takes the scalar path.
    static const bool ssse3 = __builtin_cpu_supports("ssse3");
    if (w > 2 && ssse3) x_end = 2 + bilinear_ssse3_dispatch(a + 2, b + 2, c + 2, w - 2, colours, o + 6);
#endif
    for (int64_t x = 0; x < std::min<int64_t>(2, w); ++x) bilinear_pixel(a, b, c, x, w, colours, o);
    for (int64_t x = std::max<int64_t>(x_end, 2); x < w; ++x) bilinear_pixel(a, b, c, x, w, colours, o);
}

// HA green rows (8x, columns -1 .. w), computed on demand into a ring of 4
// keyed by mirrored row index (an output row needs 3 consecutive ones).
template <class T>
class GreenRows8 {
public:
    GreenRows8(PaddedRows<T>& mos, const int cfa[4], int64_t h, int64_t w)
        : mos_(mos), cfa_(cfa), h_(h), w_(w), len_(w + 2), buf_(static_cast<size_t>(4 * len_)) {
        for (auto& t : tag_) t = -1;
    }

    const int32_t* row(int64_t r) {
        const int64_t sy = mirror(r, h_);
        const int slot = static_cast<int>(sy & 3);
        int32_t* dst = buf_.data() + slot * len_ + 1;
        if (tag_[slot] != sy) {
            const T* p[5];
            for (int k = 0; k < 5; ++k) p[k] = mos_.row(sy - 2 + k);
            constexpr int32_t peak8 = 8 * int32_t{std::numeric_limits<T>::max()};
            ha_green_row(p, w_, cfa_ + 2 * (sy & 1), peak8, dst);
            tag_[slot] = sy;
        }
        return dst;
    }

private:
    PaddedRows<T>& mos_;
    const int* cfa_;
    int64_t h_, w_, len_;
    std::vector<int32_t> buf_;
    int64_t tag_[4];
};

}  // namespace

template <class T>
void demosaic(const T* mosaic, int64_t n, int64_t h, int64_t w, const int cfa[4], Demosaic method, T* out_int,
              float* out_float, int threads) {
    check_bayer(cfa);
    if (h < 2 || w < 2) {
        throw std::invalid_argument("mosaic: " + std::to_string(h) + "x" + std::to_string(w) +
                                    " is too small for a 2x2 Bayer pattern (need at least 2x2)");
    }
    if ((out_int == nullptr) == (out_float == nullptr)) throw std::invalid_argument("demosaic: one output expected");
    const bool ha = method == Demosaic::HamiltonAdams;
    // Rows of all images in one parallel loop; each thread keeps its own rings.
    if (method == Demosaic::Bilinear && out_int) {
        parallel_for(n * h, threads, [&](int64_t b, int64_t e) {
            for (int64_t row = b; row < e; ++row) {
                const int64_t i = row / h, y = row % h;
                const T* img = mosaic + i * h * w;
                bilinear_row(img + mirror(y - 1, h) * w, img + y * w, img + mirror(y + 1, h) * w, w,
                             cfa + 2 * (y & 1), out_int + row * w * 3);
            }
        });
        return;
    }
    // Rows of all images in one parallel loop; each thread keeps its own rings.
    parallel_chunks(n * h, threads, [&](int, int64_t b, int64_t e) {
        int64_t current = -1;
        std::unique_ptr<PaddedRows<T>> mos;
        std::unique_ptr<GreenRows8<T>> grn;
        for (int64_t row = b; row < e; ++row) {
            const int64_t i = row / h, y = row % h;
            if (i != current) {
                mos = std::make_unique<PaddedRows<T>>(mosaic + i * h * w, h, w);
                if (ha) grn = std::make_unique<GreenRows8<T>>(*mos, cfa, h, w);
                current = i;
            }
            const int32_t* g[3] = {nullptr, nullptr, nullptr};
            if (ha) {  // green rows first: they pull mosaic rows y-3 .. y+3 through the ring
                for (int k = 0; k < 3; ++k) g[k] = grn->row(y - 1 + k);
            }
            const T* p[5];
            for (int k = 0; k < 5; ++k) p[k] = mos->row(y - 2 + k);
            T* oi = out_int ? out_int + row * w * 3 : nullptr;
            float* of = out_float ? out_float + row * w * 3 : nullptr;
            const int* colours = cfa + 2 * (y & 1);
            for (int par = 0; par < 2; ++par) scalar_parity(method, p, g, par, w, colours[par], colours[1 - par], oi, of);
        }
    });
}

template void demosaic<uint8_t>(const uint8_t*, int64_t, int64_t, int64_t, const int*, Demosaic, uint8_t*, float*,
                                int);
template void demosaic<uint16_t>(const uint16_t*, int64_t, int64_t, int64_t, const int*, Demosaic, uint16_t*, float*,
                                 int);

}  // namespace instab::kernels
