// Let GCC if-convert the clamps (min/max) in the row loops so that they
// vectorise: floating-point exceptions are never inspected, and this changes no
// result (unlike -ffast-math, which stays off). Placed before every include so
// that all code in this file shares the setting and still inlines. Clang does
// not assume trapping math by default.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "isp.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "parallel.hpp"
#include "rng.hpp"

namespace instab::kernels {

// ---------------------------------------------------------------------------
// Transfer functions

double gamma_encode(Gamma g, double x) {
    x = std::min(std::max(x, 0.0), 1.0);
    switch (g) {
        case Gamma::Linear: return x;
        case Gamma::SRGB: return x <= 0.0031308 ? 12.92 * x : 1.055 * std::pow(x, 1.0 / 2.4) - 0.055;
        case Gamma::BT709: return x < 0.018 ? 4.5 * x : 1.099 * std::pow(x, 0.45) - 0.099;
    }
    throw std::invalid_argument("gamma: unknown transfer function");
}

double gamma_decode(Gamma g, double y) {
    y = std::min(std::max(y, 0.0), 1.0);
    switch (g) {
        case Gamma::Linear: return y;
        case Gamma::SRGB: return y <= 0.04045 ? y / 12.92 : std::pow((y + 0.055) / 1.055, 2.4);
        case Gamma::BT709: return y < 0.081 ? y / 4.5 : std::pow((y + 0.099) / 1.099, 1.0 / 0.45);
    }
    throw std::invalid_argument("gamma: unknown transfer function");
}

double tone_forward(Tone t, double x) {
    x = std::min(std::max(x, 0.0), 1.0);
    return t == Tone::Smoothstep ? 3.0 * x * x - 2.0 * x * x * x : x;
}

double tone_inverse(Tone t, double y) {
    y = std::min(std::max(y, 0.0), 1.0);
    return t == Tone::Smoothstep ? 0.5 - std::sin(std::asin(1.0 - 2.0 * y) / 3.0) : y;
}

void check_bayer(const int cfa[4]) {
    int count[3] = {0, 0, 0};
    for (int i = 0; i < 4; ++i) {
        if (cfa[i] < 0 || cfa[i] > 2) throw std::invalid_argument("pattern: colours must be 0 (R), 1 (G) or 2 (B)");
        ++count[cfa[i]];
    }
    if (count[0] != 1 || count[1] != 2 || count[2] != 1 ||
        !((cfa[0] == 1 && cfa[3] == 1) || (cfa[1] == 1 && cfa[2] == 1))) {
        throw std::invalid_argument("pattern: not a Bayer layout (need one R, one B and two diagonal G)");
    }
}

namespace {

// Mirror an index into [0, n) without repeating the edge (reflect-101); the
// period 2n-2 is even, so the parity (the Bayer colour) is kept.
inline int64_t reflect(int64_t i, int64_t n) {
    if (n == 1) return 0;
    const int64_t period = 2 * n - 2;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

// std::max(0, v) is 0 for NaN ((0 < NaN) is false); both compile to minss/maxss.
inline float clamp01(float v) { return std::min(std::max(0.f, v), 1.f); }

// Encoding table: tone(gamma(x)) sampled at x = i / kLutSteps, read with linear
// interpolation (error ~1e-7, far below one 16-bit step). Built once per curve.
constexpr int kLutSteps = 65536;

const std::vector<float>& encode_table(Gamma g, Tone t) {
    static std::once_flag flags[3][2];
    static std::vector<float> tables[3][2];
    const int gi = static_cast<int>(g), ti = static_cast<int>(t);
    std::call_once(flags[gi][ti], [&] {
        std::vector<float>& tab = tables[gi][ti];
        tab.resize(kLutSteps + 1);
        for (int i = 0; i <= kLutSteps; ++i) {
            tab[i] = static_cast<float>(tone_forward(t, gamma_encode(g, static_cast<double>(i) / kLutSteps)));
        }
    });
    return tables[gi][ti];
}

// For uint8 output: the encoded value already scaled and rounded, indexed by the
// linear value rounded to 1/65535 (at most 0.03 of an 8-bit step off the exact curve).
const std::vector<uint8_t>& encode_table8(Gamma g, Tone t) {
    static std::once_flag flags[3][2];
    static std::vector<uint8_t> tables[3][2];
    const int gi = static_cast<int>(g), ti = static_cast<int>(t);
    std::call_once(flags[gi][ti], [&] {
        std::vector<uint8_t>& tab = tables[gi][ti];
        tab.resize(65536);
        for (int i = 0; i < 65536; ++i) {
            const double v = tone_forward(t, gamma_encode(g, i / 65535.0));
            tab[i] = static_cast<uint8_t>(std::floor(v * 255.0 + 0.5));
        }
    });
    return tables[gi][ti];
}

inline float lut_lookup(const float* tab, float v) {
    const float f = v * static_cast<float>(kLutSteps);
    int i = static_cast<int>(f);
    if (i >= kLutSteps) i = kLutSteps - 1;
    const float t = f - static_cast<float>(i);
    return tab[i] + t * (tab[i + 1] - tab[i]);
}

// ---- Demosaic on rows split by column parity.
//
// A padded row is stored as two arrays, even[j] = column 2j and odd[j] = column
// 2j + 1, for j = -1 .. half (columns outside the image mirrored). Every pixel of
// one parity in one row has the same Bayer colour and the same kind of
// neighbours, so each formula becomes a unit-stride loop over j that the
// compiler vectorises. The float operations and their order match the numpy
// reference exactly (tests/reference.py).

struct SplitRow {
    const float* even;  // index j = column 2j; valid for j in [-1, half]
    const float* odd;   // index j = column 2j + 1
};

// The 5x5 neighbourhood of every pixel of one parity in a row: tap[j] is that
// neighbour of the j-th pixel.
struct Taps {
    const float *c, *n, *s, *w, *e, *nn, *ss, *ww, *ee, *nw, *ne, *sw, *se;
};

// r[0..4]: rows y-2 .. y+2.
inline Taps taps_even(const SplitRow r[5]) {
    return Taps{r[2].even, r[1].even, r[3].even, r[2].odd - 1, r[2].odd, r[0].even, r[4].even,
                r[2].even - 1, r[2].even + 1, r[1].odd - 1, r[1].odd, r[3].odd - 1, r[3].odd};
}

inline Taps taps_odd(const SplitRow r[5]) {
    return Taps{r[2].odd, r[1].odd, r[3].odd, r[2].even, r[2].even + 1, r[0].odd, r[4].odd,
                r[2].odd - 1, r[2].odd + 1, r[1].even, r[1].even + 1, r[3].even, r[3].even + 1};
}

inline Taps taps_for(int parity, const SplitRow r[5]) { return parity ? taps_odd(r) : taps_even(r); }

// Green pixel: the colours of its horizontal (oh) and vertical (ov) neighbours.
void bilinear_green(const Taps& t, int64_t m, float* __restrict oh, float* __restrict ov) {
    for (int64_t j = 0; j < m; ++j) {
        oh[j] = (t.w[j] + t.e[j]) * 0.5f;
        ov[j] = (t.n[j] + t.s[j]) * 0.5f;
    }
}

// Red/blue pixel: green (og) and the opposite colour on the diagonals (oo).
void bilinear_colour(const Taps& t, int64_t m, float* __restrict og, float* __restrict oo) {
    for (int64_t j = 0; j < m; ++j) {
        og[j] = ((t.n[j] + t.s[j]) + (t.w[j] + t.e[j])) * 0.25f;
        oo[j] = ((t.nw[j] + t.ne[j]) + (t.sw[j] + t.se[j])) * 0.25f;
    }
}

// Malvar, He and Cutler, "High-quality linear interpolation for demosaicing of
// Bayer-patterned color images", ICASSP 2004: bilinear plus a scaled Laplacian
// of the centre colour (the paper's 5x5 filters, in eighths).
void malvar_green(const Taps& t, int64_t m, float* __restrict oh, float* __restrict ov) {
    for (int64_t j = 0; j < m; ++j) {
        const float c = t.c[j];
        const float diag = (t.nw[j] + t.ne[j]) + (t.sw[j] + t.se[j]);
        oh[j] = (5.f * c + 4.f * (t.w[j] + t.e[j]) - diag - (t.ww[j] + t.ee[j]) + 0.5f * (t.nn[j] + t.ss[j])) * 0.125f;
        ov[j] = (5.f * c + 4.f * (t.n[j] + t.s[j]) - diag - (t.nn[j] + t.ss[j]) + 0.5f * (t.ww[j] + t.ee[j])) * 0.125f;
    }
}

void malvar_colour(const Taps& t, int64_t m, float* __restrict og, float* __restrict oo) {
    for (int64_t j = 0; j < m; ++j) {
        const float c = t.c[j];
        const float diag = (t.nw[j] + t.ne[j]) + (t.sw[j] + t.se[j]);
        const float far = (t.nn[j] + t.ss[j]) + (t.ww[j] + t.ee[j]);
        og[j] = (4.f * c + 2.f * ((t.n[j] + t.s[j]) + (t.w[j] + t.e[j])) - far) * 0.125f;
        oo[j] = (6.f * c + 2.f * diag - 1.5f * far) * 0.125f;
    }
}

// Hamilton and Adams (US patent 5,629,734): green along the direction of the
// smaller gradient (first difference of green plus second difference of the
// centre colour), then red/blue from colour differences, the diagonal one
// again along the smaller gradient.
void ha_green(const Taps& t, int64_t m, float* __restrict g) {
    for (int64_t j = 0; j < m; ++j) {
        const float c = t.c[j];
        const float lap_h = 2.f * c - t.ww[j] - t.ee[j], lap_v = 2.f * c - t.nn[j] - t.ss[j];
        const float grad_h = std::fabs(t.w[j] - t.e[j]) + std::fabs(lap_h);
        const float grad_v = std::fabs(t.n[j] - t.s[j]) + std::fabs(lap_v);
        const float est_h = (t.w[j] + t.e[j]) * 0.5f + lap_h * 0.25f;
        const float est_v = (t.n[j] + t.s[j]) * 0.5f + lap_v * 0.25f;
        const float both = (est_h + est_v) * 0.5f;
        const float v = grad_h < grad_v ? est_h : (grad_v < grad_h ? est_v : both);
        g[j] = clamp01(v);
    }
}

// Green pixel, given the green plane's taps G (G.c is the pixel itself).
void ha_green_site(const Taps& P, const Taps& G, int64_t m, float* __restrict oh, float* __restrict ov) {
    for (int64_t j = 0; j < m; ++j) {
        const float g = G.c[j];
        oh[j] = g + ((P.w[j] - G.w[j]) + (P.e[j] - G.e[j])) * 0.5f;
        ov[j] = g + ((P.n[j] - G.n[j]) + (P.s[j] - G.s[j])) * 0.5f;
    }
}

// Red/blue pixel: the opposite colour (green is G.c).
void ha_colour_site(const Taps& P, const Taps& G, int64_t m, float* __restrict oo) {
    for (int64_t j = 0; j < m; ++j) {
        const float g = G.c[j];
        const float ne = P.ne[j], sw = P.sw[j], nw = P.nw[j], se = P.se[j];
        const float lap1 = 2.f * g - G.ne[j] - G.sw[j];
        const float lap2 = 2.f * g - G.nw[j] - G.se[j];
        const float grad1 = std::fabs(ne - sw) + std::fabs(lap1);
        const float grad2 = std::fabs(nw - se) + std::fabs(lap2);
        const float est1 = (ne + sw) * 0.5f + lap1 * 0.5f;
        const float est2 = (nw + se) * 0.5f + lap2 * 0.5f;
        const float both = (est1 + est2) * 0.5f;
        oo[j] = grad1 < grad2 ? est1 : (grad2 < grad1 ? est2 : both);
    }
}

// Mirror the out-of-image entries (j = -1 and the tail) of a split array of
// parity `par` from the entries already computed inside the image.
inline void mirror_ends(float* a, int par, int64_t half, int64_t w) {
    for (int64_t j = -1; j <= half; ++j) {
        const int64_t x = 2 * j + par;
        if (x < 0 || x >= w) a[j] = a[reflect(x, w) >> 1];
        if (j == -1) j = std::max<int64_t>(-1, (w - par) / 2 - 1);  // skip the interior
    }
}

// Normalised mosaic rows, split by parity, computed on demand into a ring of 8
// rows keyed by their mirrored index: the rows one output row needs are at most
// 7 consecutive indices, so the ring never evicts a row in use.
template <class In>
class MosaicRows {
public:
    MosaicRows(const In* m, int64_t h, int64_t w, const DevelopParams& p)
        : m_(m), h_(h), w_(w), half_((w + 1) / 2), len_(half_ + 2), buf_(static_cast<size_t>(16 * len_)) {
        for (int k = 0; k < 4; ++k) {
            black_[k] = p.black[k];
            scale_[k] = 1.f / (p.white - p.black[k]);
            gain_[k] = p.gains[p.cfa[k]];
        }
        for (auto& t : tag_) t = -1;
    }

    SplitRow row(int64_t r) {
        const int64_t sy = reflect(r, h_);
        const int slot = static_cast<int>(sy & 7);
        float* even = buf_.data() + (2 * slot) * len_ + 1;
        float* odd = even + len_;
        if (tag_[slot] != sy) {
            fill(sy, even, odd);
            tag_[slot] = sy;
        }
        return SplitRow{even, odd};
    }

private:
    // (raw - black) * scale, clipped, times the white-balance gain, clipped.
    void fill(int64_t sy, float* even, float* odd) const {
        const In* src = m_ + sy * w_;
        const int k = static_cast<int>(sy & 1) * 2;
        const float b0 = black_[k], s0 = scale_[k], g0 = gain_[k];
        const float b1 = black_[k + 1], s1 = scale_[k + 1], g1 = gain_[k + 1];
        const int64_t n_even = (w_ + 1) / 2, n_odd = w_ / 2;
        for (int64_t j = 0; j < n_even; ++j) {
            even[j] = clamp01(clamp01((static_cast<float>(src[2 * j]) - b0) * s0) * g0);
        }
        for (int64_t j = 0; j < n_odd; ++j) {
            odd[j] = clamp01(clamp01((static_cast<float>(src[2 * j + 1]) - b1) * s1) * g1);
        }
        mirror_ends(even, 0, half_, w_);
        mirror_ends(odd, 1, half_, w_);
    }

    const In* m_;
    int64_t h_, w_, half_, len_;
    std::vector<float> buf_;
    int64_t tag_[8];
    float black_[4], scale_[4], gain_[4];
};

// Hamilton-Adams green rows (split like MosaicRows), computed on demand into a
// ring of 4 (an output row needs 3 consecutive ones).
template <class In>
class GreenRows {
public:
    GreenRows(MosaicRows<In>& mos, const int cfa[4], int64_t h, int64_t w)
        : mos_(mos), cfa_(cfa), h_(h), w_(w), half_((w + 1) / 2), len_(half_ + 2),
          buf_(static_cast<size_t>(8 * len_)) {
        for (auto& t : tag_) t = -1;
    }

    SplitRow row(int64_t r) {
        const int64_t sy = reflect(r, h_);
        const int slot = static_cast<int>(sy & 3);
        float* even = buf_.data() + (2 * slot) * len_ + 1;
        float* odd = even + len_;
        if (tag_[slot] != sy) {
            SplitRow rows[5];
            for (int k = 0; k < 5; ++k) rows[k] = mos_.row(sy - 2 + k);
            for (int par = 0; par < 2; ++par) {
                float* g = par ? odd : even;
                const int64_t m = par ? w_ / 2 : (w_ + 1) / 2;
                const Taps t = taps_for(par, rows);
                if (cfa_[(sy & 1) * 2 + par] == 1) {
                    std::copy(t.c, t.c + m, g);
                } else {
                    ha_green(t, m, g);
                }
                mirror_ends(g, par, half_, w_);
            }
            tag_[slot] = sy;
        }
        return SplitRow{even, odd};
    }

private:
    MosaicRows<In>& mos_;
    const int* cfa_;
    int64_t h_, w_, half_, len_;
    std::vector<float> buf_;
    int64_t tag_[4];
};

// Colour matrix, clipping, transfer function and tone curve, then the output
// type, for the m pixels of one parity (channels ch[0..2]) of one row.
template <class Out>
struct Finisher {
    float m[9];            // cam_to_rgb
    const float* tab;      // encoding table (uint16/float out), null for linear without tone
    const uint8_t* tab8;   // encoding table for uint8 out, null for linear without tone

    // ch: channel arrays of the `count` pixels of one parity; v*, q*: scratch of
    // `count` floats / ints; o: this parity's first output pixel (pixels are 2 apart).
    void operator()(const float* const ch[3], int64_t count, float* __restrict v0, float* __restrict v1,
                    float* __restrict v2, int32_t* __restrict q0, int32_t* __restrict q1, int32_t* __restrict q2,
                    Out* o) const {
        const float* R = ch[0];
        const float* G = ch[1];
        const float* B = ch[2];
        for (int64_t j = 0; j < count; ++j) {
            const float r = clamp01(R[j]), g = clamp01(G[j]), b = clamp01(B[j]);
            v0[j] = clamp01((m[0] * r + m[1] * g) + m[2] * b);
            v1[j] = clamp01((m[3] * r + m[4] * g) + m[5] * b);
            v2[j] = clamp01((m[6] * r + m[7] * g) + m[8] * b);
        }
        if constexpr (std::is_same_v<Out, float>) {
            if (tab) {
                const float* const t = tab;
                for (int64_t j = 0; j < count; ++j) {
                    v0[j] = lut_lookup(t, v0[j]);
                    v1[j] = lut_lookup(t, v1[j]);
                    v2[j] = lut_lookup(t, v2[j]);
                }
            }
            for (int64_t j = 0; j < count; ++j) {
                float* px = o + 6 * j;
                px[0] = v0[j];
                px[1] = v1[j];
                px[2] = v2[j];
            }
            return;
        } else {
            // Integer codes in a vectorised loop, then a plain interleaving copy.
            if (std::is_same_v<Out, uint8_t> && tab8) {
                for (int64_t j = 0; j < count; ++j) {  // table index: the linear value to 1/65535
                    q0[j] = static_cast<int32_t>(v0[j] * 65535.f + 0.5f);
                    q1[j] = static_cast<int32_t>(v1[j] * 65535.f + 0.5f);
                    q2[j] = static_cast<int32_t>(v2[j] * 65535.f + 0.5f);
                }
                const uint8_t* const t8 = tab8;
                for (int64_t j = 0; j < count; ++j) {
                    Out* px = o + 6 * j;
                    px[0] = t8[q0[j]];
                    px[1] = t8[q1[j]];
                    px[2] = t8[q2[j]];
                }
                return;
            }
            if (tab) {
                const float* const t = tab;
                for (int64_t j = 0; j < count; ++j) {
                    v0[j] = lut_lookup(t, v0[j]);
                    v1[j] = lut_lookup(t, v1[j]);
                    v2[j] = lut_lookup(t, v2[j]);
                }
            }
            const float peak = std::is_same_v<Out, uint8_t> ? 255.f : 65535.f;
            for (int64_t j = 0; j < count; ++j) {
                q0[j] = static_cast<int32_t>(v0[j] * peak + 0.5f);
                q1[j] = static_cast<int32_t>(v1[j] * peak + 0.5f);
                q2[j] = static_cast<int32_t>(v2[j] * peak + 0.5f);
            }
            for (int64_t j = 0; j < count; ++j) {
                Out* px = o + 6 * j;
                px[0] = static_cast<Out>(q0[j]);
                px[1] = static_cast<Out>(q1[j]);
                px[2] = static_cast<Out>(q2[j]);
            }
        }
    }
};

}  // namespace

// ---------------------------------------------------------------------------
// Unprocess

void unprocess(const uint8_t* images, int64_t n, int64_t h, int64_t w, const UnprocessParams& p, uint16_t* out,
               int threads) {
    check_bayer(p.cfa);
    if (h < 2 || w < 2) {
        throw std::invalid_argument("images: " + std::to_string(h) + "x" + std::to_string(w) +
                                    " is too small for a 2x2 Bayer pattern (need at least 2x2)");
    }
    if (!(p.white > 0) || p.white > 65535) throw std::invalid_argument("white_level: must be in (0, 65535]");
    for (int k = 0; k < 4; ++k) {
        if (!(p.black[k] >= 0) || !(p.black[k] < p.white)) {
            throw std::invalid_argument("black_level: must be >= 0 and below white_level");
        }
    }
    if (!(p.shot_noise >= 0) || !(p.read_noise >= 0)) {
        throw std::invalid_argument("shot_noise/read_noise: variances must be >= 0");
    }
    // uint8 sRGB -> linear, through the inverse tone curve and inverse transfer function.
    double lin[256];
    for (int i = 0; i < 256; ++i) lin[i] = gamma_decode(p.gamma, tone_inverse(p.tone, i / 255.0));
    const bool noisy = p.shot_noise > 0 || p.read_noise > 0;
    const double* M = p.rgb_to_cam;
    parallel_for(n * h, threads, [&](int64_t b, int64_t e) {
        for (int64_t row = b; row < e; ++row) {
            const int64_t i = row / h, y = row % h;
            const CounterRng rng(p.seed, p.first_index + static_cast<uint64_t>(i));
            const uint8_t* src = images + row * w * 3;
            uint16_t* dst = out + row * w;
            uint64_t pair = ~uint64_t{0};  // counter of the normal pair held in z0, z1
            double z0 = 0, z1 = 0;
            for (int64_t x = 0; x < w; ++x) {
                const double r = lin[src[3 * x]], g = lin[src[3 * x + 1]], bl = lin[src[3 * x + 2]];
                const int k = static_cast<int>((y & 1) * 2 + (x & 1));
                const int c = p.cfa[k];
                double cam[3];
                for (int j = 0; j < 3; ++j) cam[j] = (M[3 * j] * r + M[3 * j + 1] * g) + M[3 * j + 2] * bl;
                double gain = p.inv_gains[c];
                if (p.highlight_safe) {
                    // Brooks et al.: blend the inverse gain towards 1 above gray 0.9 so that
                    // highlights saturate in raw as they would in a camera.
                    const double gray = (cam[0] + cam[1] + cam[2]) / 3.0;
                    const double t = std::max(gray - 0.9, 0.0) / 0.1;
                    const double mask = t * t;
                    gain = std::max(mask + (1.0 - mask) * gain, gain);
                }
                // max(0, NaN) is 0: a NaN (inf - inf from a huge rgb_to_cam) must not reach the uint16 cast.
                double v = std::min(std::max(0.0, cam[c] * gain), 1.0);
                if (noisy) {
                    // Pixel q (row-major in its image) takes normal q % 2 of Philox block q / 2.
                    const uint64_t q = static_cast<uint64_t>(y * w + x);
                    if ((q >> 1) != pair) {
                        pair = q >> 1;
                        rng.normal2(pair, z0, z1);
                    }
                    v += std::sqrt(p.shot_noise * v + p.read_noise) * ((q & 1) ? z1 : z0);
                }
                const double dn = std::floor(p.black[k] + v * (p.white - p.black[k]) + 0.5);
                dst[x] = static_cast<uint16_t>(std::min(std::max(dn, 0.0), p.white));
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Develop

template <class In, class Out>
void develop(const In* mosaic, int64_t n, int64_t h, int64_t w, const DevelopParams& p, Out* out, int threads) {
    check_bayer(p.cfa);
    if (h < 2 || w < 2) {
        throw std::invalid_argument("mosaic: " + std::to_string(h) + "x" + std::to_string(w) +
                                    " is too small for a 2x2 Bayer pattern (need at least 2x2)");
    }
    for (int k = 0; k < 4; ++k) {
        if (!(p.white > p.black[k])) throw std::invalid_argument("white_level: must be above black_level");
    }
    for (int k = 0; k < 3; ++k) {
        if (!(p.gains[k] > 0) || !std::isfinite(p.gains[k])) {
            throw std::invalid_argument("wb_gains: must be positive and finite");
        }
    }
    const bool curve = !(p.gamma == Gamma::Linear && p.tone == Tone::None);
    Finisher<Out> finish{};
    std::copy(p.cam_to_rgb, p.cam_to_rgb + 9, finish.m);
    if (curve && std::is_same_v<Out, uint8_t>) finish.tab8 = encode_table8(p.gamma, p.tone).data();
    if (curve && !std::is_same_v<Out, uint8_t>) finish.tab = encode_table(p.gamma, p.tone).data();
    const int* cfa = p.cfa;
    const bool ha = p.method == Demosaic::HamiltonAdams;
    const int64_t half = (w + 1) / 2;
    // Rows of all images in one parallel loop; each thread keeps its own row rings.
    parallel_chunks(n * h, threads, [&](int, int64_t b, int64_t e) {
        int64_t current = -1;
        std::unique_ptr<MosaicRows<In>> mos;
        std::unique_ptr<GreenRows<In>> grn;
        std::vector<float> scratch(static_cast<size_t>(5 * half));
        std::vector<int32_t> iscratch(static_cast<size_t>(3 * half));
        float* tmp[5];
        for (int k = 0; k < 5; ++k) tmp[k] = scratch.data() + k * half;
        int32_t* itmp[3];
        for (int k = 0; k < 3; ++k) itmp[k] = iscratch.data() + k * half;
        for (int64_t row = b; row < e; ++row) {
            const int64_t i = row / h, y = row % h;
            if (i != current) {
                mos = std::make_unique<MosaicRows<In>>(mosaic + i * h * w, h, w, p);
                if (ha) grn = std::make_unique<GreenRows<In>>(*mos, cfa, h, w);
                current = i;
            }
            SplitRow G[5];
            if (ha) {  // green rows first: they pull mosaic rows y-3 .. y+3 through the ring
                for (int k = 1; k < 4; ++k) G[k] = grn->row(y - 2 + k);
                G[0] = G[4] = G[2];  // unused taps two rows away
            }
            SplitRow P[5];
            for (int k = 0; k < 5; ++k) P[k] = mos->row(y - 2 + k);
            Out* o = out + row * w * 3;
            for (int par = 0; par < 2; ++par) {
                const int64_t m = par ? w / 2 : (w + 1) / 2;
                if (m == 0) continue;
                const int col = cfa[(y & 1) * 2 + par];
                const Taps t = taps_for(par, P);
                const float* ch[3];
                if (col == 1) {
                    const int hch = cfa[(y & 1) * 2 + (1 - par)], vch = 2 - hch;
                    switch (p.method) {
                        case Demosaic::Bilinear: bilinear_green(t, m, tmp[0], tmp[1]); break;
                        case Demosaic::Malvar: malvar_green(t, m, tmp[0], tmp[1]); break;
                        case Demosaic::HamiltonAdams: ha_green_site(t, taps_for(par, G), m, tmp[0], tmp[1]); break;
                    }
                    ch[1] = t.c;
                    ch[hch] = tmp[0];
                    ch[vch] = tmp[1];
                } else {
                    switch (p.method) {
                        case Demosaic::Bilinear: bilinear_colour(t, m, tmp[0], tmp[1]); ch[1] = tmp[0]; break;
                        case Demosaic::Malvar: malvar_colour(t, m, tmp[0], tmp[1]); ch[1] = tmp[0]; break;
                        case Demosaic::HamiltonAdams: {
                            const Taps gt = taps_for(par, G);
                            ha_colour_site(t, gt, m, tmp[1]);
                            ch[1] = gt.c;
                            break;
                        }
                    }
                    ch[col] = t.c;
                    ch[2 - col] = tmp[1];
                }
                finish(ch, m, tmp[2], tmp[3], tmp[4], itmp[0], itmp[1], itmp[2], o + 3 * par);
            }
        }
    });
}

template void develop<uint16_t, uint8_t>(const uint16_t*, int64_t, int64_t, int64_t, const DevelopParams&, uint8_t*, int);
template void develop<uint16_t, uint16_t>(const uint16_t*, int64_t, int64_t, int64_t, const DevelopParams&, uint16_t*,
                                          int);
template void develop<uint16_t, float>(const uint16_t*, int64_t, int64_t, int64_t, const DevelopParams&, float*, int);
template void develop<float, uint8_t>(const float*, int64_t, int64_t, int64_t, const DevelopParams&, uint8_t*, int);
template void develop<float, uint16_t>(const float*, int64_t, int64_t, int64_t, const DevelopParams&, uint16_t*, int);
template void develop<float, float>(const float*, int64_t, int64_t, int64_t, const DevelopParams&, float*, int);

}  // namespace instab::kernels
