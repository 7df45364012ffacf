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

template <class Out>
inline Out to_out(float v);
template <>
inline uint8_t to_out<uint8_t>(float v) {
    return static_cast<uint8_t>(v * 255.f + 0.5f);
}
template <>
inline uint16_t to_out<uint16_t>(float v) {
    return static_cast<uint16_t>(v * 65535.f + 0.5f);
}
template <>
inline float to_out<float>(float v) {
    return v;
}

// A 5x5 window on a padded plane (2 pixels of border on every side): row(dy)
// points at the row dy away from the centre, shifted so index x is column x.
struct Window {
    const float* rows[5];
    inline float at(int dy, int64_t x, int dx) const { return rows[2 + dy][x + 2 + dx]; }
};


// ---- demosaic formulas at one pixel. P: mosaic window, c: column.
// `hch` is the channel of the horizontal neighbours of a green pixel, `vch` of
// the vertical ones; for R/B pixels `other` is the colour on the diagonals.

struct Rgb {
    float v[3];
};

inline void bilinear_green_site(const Window& P, int64_t x, int hch, int vch, Rgb& o) {
    o.v[1] = P.at(0, x, 0);
    o.v[hch] = (P.at(0, x, -1) + P.at(0, x, 1)) * 0.5f;
    o.v[vch] = (P.at(-1, x, 0) + P.at(1, x, 0)) * 0.5f;
}

inline void bilinear_colour_site(const Window& P, int64_t x, int col, Rgb& o) {
    o.v[col] = P.at(0, x, 0);
    o.v[1] = ((P.at(-1, x, 0) + P.at(1, x, 0)) + (P.at(0, x, -1) + P.at(0, x, 1))) * 0.25f;
    o.v[2 - col] = ((P.at(-1, x, -1) + P.at(-1, x, 1)) + (P.at(1, x, -1) + P.at(1, x, 1))) * 0.25f;
}

// Malvar, He and Cutler, "High-quality linear interpolation for demosaicing of
// Bayer-patterned color images", ICASSP 2004: bilinear plus a scaled Laplacian
// of the centre colour (the paper's 5x5 filters, in eighths).
inline void malvar_green_site(const Window& P, int64_t x, int hch, int vch, Rgb& o) {
    const float c = P.at(0, x, 0);
    const float n = P.at(-1, x, 0), s = P.at(1, x, 0), w = P.at(0, x, -1), e = P.at(0, x, 1);
    const float nn = P.at(-2, x, 0), ss = P.at(2, x, 0), ww = P.at(0, x, -2), ee = P.at(0, x, 2);
    const float diag = (P.at(-1, x, -1) + P.at(-1, x, 1)) + (P.at(1, x, -1) + P.at(1, x, 1));
    o.v[1] = c;
    o.v[hch] = (5.f * c + 4.f * (w + e) - diag - (ww + ee) + 0.5f * (nn + ss)) * 0.125f;
    o.v[vch] = (5.f * c + 4.f * (n + s) - diag - (nn + ss) + 0.5f * (ww + ee)) * 0.125f;
}

inline void malvar_colour_site(const Window& P, int64_t x, int col, Rgb& o) {
    const float c = P.at(0, x, 0);
    const float n = P.at(-1, x, 0), s = P.at(1, x, 0), w = P.at(0, x, -1), e = P.at(0, x, 1);
    const float nn = P.at(-2, x, 0), ss = P.at(2, x, 0), ww = P.at(0, x, -2), ee = P.at(0, x, 2);
    const float diag = (P.at(-1, x, -1) + P.at(-1, x, 1)) + (P.at(1, x, -1) + P.at(1, x, 1));
    const float far = (nn + ss) + (ww + ee);
    o.v[col] = c;
    o.v[1] = (4.f * c + 2.f * ((n + s) + (w + e)) - far) * 0.125f;
    o.v[2 - col] = (6.f * c + 2.f * diag - 1.5f * far) * 0.125f;
}

// Hamilton and Adams (US patent 5,629,734): green along the direction of the
// smaller gradient (first difference of green plus second difference of the
// centre colour), then red/blue from colour differences, the diagonal one
// again along the smaller gradient.
inline float ha_green(const Window& P, int64_t x) {
    const float c = P.at(0, x, 0);
    const float n = P.at(-1, x, 0), s = P.at(1, x, 0), w = P.at(0, x, -1), e = P.at(0, x, 1);
    const float nn = P.at(-2, x, 0), ss = P.at(2, x, 0), ww = P.at(0, x, -2), ee = P.at(0, x, 2);
    const float lap_h = 2.f * c - ww - ee, lap_v = 2.f * c - nn - ss;
    const float grad_h = std::fabs(w - e) + std::fabs(lap_h);
    const float grad_v = std::fabs(n - s) + std::fabs(lap_v);
    const float est_h = (w + e) * 0.5f + lap_h * 0.25f;
    const float est_v = (n + s) * 0.5f + lap_v * 0.25f;
    const float g = grad_h < grad_v ? est_h : (grad_v < grad_h ? est_v : (est_h + est_v) * 0.5f);
    return clamp01(g);
}

inline void ha_green_site(const Window& P, const Window& G, int64_t x, int hch, int vch, Rgb& o) {
    const float g = G.at(0, x, 0);
    o.v[1] = g;
    o.v[hch] = g + ((P.at(0, x, -1) - G.at(0, x, -1)) + (P.at(0, x, 1) - G.at(0, x, 1))) * 0.5f;
    o.v[vch] = g + ((P.at(-1, x, 0) - G.at(-1, x, 0)) + (P.at(1, x, 0) - G.at(1, x, 0))) * 0.5f;
}

inline void ha_colour_site(const Window& P, const Window& G, int64_t x, int col, Rgb& o) {
    const float g = G.at(0, x, 0);
    o.v[col] = P.at(0, x, 0);
    o.v[1] = g;
    const float ne = P.at(-1, x, 1), sw = P.at(1, x, -1), nw = P.at(-1, x, -1), se = P.at(1, x, 1);
    const float lap1 = 2.f * g - G.at(-1, x, 1) - G.at(1, x, -1);
    const float lap2 = 2.f * g - G.at(-1, x, -1) - G.at(1, x, 1);
    const float grad1 = std::fabs(ne - sw) + std::fabs(lap1);
    const float grad2 = std::fabs(nw - se) + std::fabs(lap2);
    const float est1 = (ne + sw) * 0.5f + lap1 * 0.5f;
    const float est2 = (nw + se) * 0.5f + lap2 * 0.5f;
    o.v[2 - col] = grad1 < grad2 ? est1 : (grad2 < grad1 ? est2 : (est1 + est2) * 0.5f);
}

// Normalised mosaic rows, computed on demand into a small ring of padded rows
// (2 pixels of mirrored border each side): a thread never holds the whole image.
// Rows are keyed by their mirrored index; the rows one output row needs are at
// most 7 consecutive indices, so an 8-slot ring never evicts a row in use.
template <class In>
class MosaicRows {
public:
    MosaicRows(const In* m, int64_t h, int64_t w, const DevelopParams& p)
        : m_(m), h_(h), w_(w), buf_(static_cast<size_t>(8 * (w + 4))) {
        for (int k = 0; k < 4; ++k) {
            black_[k] = p.black[k];
            scale_[k] = 1.f / (p.white - p.black[k]);
            gain_[k] = p.gains[p.cfa[k]];
        }
        for (auto& t : tag_) t = -1;
    }

    // Padded row r (any integer; mirrored into [0, h)); index 0 is column -2.
    const float* row(int64_t r) {
        const int64_t sy = reflect(r, h_);
        const int slot = static_cast<int>(sy & 7);
        float* dst = buf_.data() + slot * (w_ + 4);
        if (tag_[slot] != sy) {
            fill(sy, dst);
            tag_[slot] = sy;
        }
        return dst;
    }

private:
    // (raw - black) * scale, clipped, times the white-balance gain, clipped.
    void fill(int64_t sy, float* dst) const {
        const In* src = m_ + sy * w_;
        const int row = static_cast<int>(sy & 1) * 2;
        const float b0 = black_[row], s0 = scale_[row], g0 = gain_[row];
        const float b1 = black_[row + 1], s1 = scale_[row + 1], g1 = gain_[row + 1];
        float* d = dst + 2;
        int64_t x = 0;
        for (; x + 1 < w_; x += 2) {
            d[x] = clamp01(clamp01((static_cast<float>(src[x]) - b0) * s0) * g0);
            d[x + 1] = clamp01(clamp01((static_cast<float>(src[x + 1]) - b1) * s1) * g1);
        }
        if (x < w_) d[x] = clamp01(clamp01((static_cast<float>(src[x]) - b0) * s0) * g0);
        for (int64_t c : {int64_t{-2}, int64_t{-1}, w_, w_ + 1}) d[c] = d[reflect(c, w_)];
    }

    const In* m_;
    int64_t h_, w_;
    std::vector<float> buf_;
    int64_t tag_[8];
    float black_[4], scale_[4], gain_[4];
};

// Hamilton-Adams green rows (padded like MosaicRows), computed on demand.
template <class In>
class GreenRows {
public:
    GreenRows(MosaicRows<In>& mos, const int cfa[4], int64_t h, int64_t w)
        : mos_(mos), cfa_(cfa), h_(h), w_(w), buf_(static_cast<size_t>(4 * (w + 4))) {
        for (auto& t : tag_) t = -1;
    }

    const float* row(int64_t r) {
        const int64_t sy = reflect(r, h_);
        const int slot = static_cast<int>(sy & 3);
        float* dst = buf_.data() + slot * (w_ + 4);
        if (tag_[slot] != sy) {
            Window P;
            for (int k = 0; k < 5; ++k) P.rows[k] = mos_.row(sy - 2 + k);
            float* g = dst + 2;
            const int row = static_cast<int>(sy & 1) * 2;
            for (int64_t x = 0; x < w_; ++x) {
                g[x] = cfa_[row + static_cast<int>(x & 1)] == 1 ? P.at(0, x, 0) : ha_green(P, x);
            }
            for (int64_t c : {int64_t{-2}, int64_t{-1}, w_, w_ + 1}) g[c] = g[reflect(c, w_)];
            tag_[slot] = sy;
        }
        return dst;
    }

private:
    MosaicRows<In>& mos_;
    const int* cfa_;
    int64_t h_, w_;
    std::vector<float> buf_;
    int64_t tag_[4];
};

template <class Out>
struct Finisher {
    float m[9];            // cam_to_rgb
    const float* tab;      // encoding table (uint16/float out), null for linear without tone
    const uint8_t* tab8;   // encoding table for uint8 out, null for linear without tone
    inline void operator()(float r, float g, float b, Out* o) const {
        r = clamp01(r);
        g = clamp01(g);
        b = clamp01(b);
        const float v0 = clamp01((m[0] * r + m[1] * g) + m[2] * b);
        const float v1 = clamp01((m[3] * r + m[4] * g) + m[5] * b);
        const float v2 = clamp01((m[6] * r + m[7] * g) + m[8] * b);
        if constexpr (std::is_same_v<Out, uint8_t>) {
            if (tab8) {
                o[0] = tab8[static_cast<int>(v0 * 65535.f + 0.5f)];
                o[1] = tab8[static_cast<int>(v1 * 65535.f + 0.5f)];
                o[2] = tab8[static_cast<int>(v2 * 65535.f + 0.5f)];
                return;
            }
        } else {
            if (tab) {
                o[0] = to_out<Out>(lut_lookup(tab, v0));
                o[1] = to_out<Out>(lut_lookup(tab, v1));
                o[2] = to_out<Out>(lut_lookup(tab, v2));
                return;
            }
        }
        o[0] = to_out<Out>(v0);
        o[1] = to_out<Out>(v1);
        o[2] = to_out<Out>(v2);
    }
};

// One demosaiced pixel with its colours known at compile time: C is the colour
// at the pixel, H the colour of its horizontal neighbours.
template <Demosaic M, int C, int H>
inline void site(const Window& P, const Window& G, int64_t x, Rgb& px) {
    if constexpr (C == 1) {
        if constexpr (M == Demosaic::Bilinear) bilinear_green_site(P, x, H, 2 - H, px);
        else if constexpr (M == Demosaic::Malvar) malvar_green_site(P, x, H, 2 - H, px);
        else ha_green_site(P, G, x, H, 2 - H, px);
    } else {
        if constexpr (M == Demosaic::Bilinear) bilinear_colour_site(P, x, C, px);
        else if constexpr (M == Demosaic::Malvar) malvar_colour_site(P, x, C, px);
        else ha_colour_site(P, G, x, C, px);
    }
}

// One output row whose even columns have colour C0 and odd columns C1.
template <Demosaic M, int C0, int C1, class Out>
void row_kernel(const Window& P, const Window& G, int64_t w, const Finisher<Out>& fin, Out* o) {
    Rgb a{}, b{};
    int64_t x = 0;
    for (; x + 1 < w; x += 2) {
        site<M, C0, C1>(P, G, x, a);
        site<M, C1, C0>(P, G, x + 1, b);
        fin(a.v[0], a.v[1], a.v[2], o + 3 * x);
        fin(b.v[0], b.v[1], b.v[2], o + 3 * x + 3);
    }
    if (x < w) {
        site<M, C0, C1>(P, G, x, a);
        fin(a.v[0], a.v[1], a.v[2], o + 3 * x);
    }
}

template <Demosaic M, class Out>
void dispatch_row(int c0, int c1, const Window& P, const Window& G, int64_t w, const Finisher<Out>& fin, Out* o) {
    if (c0 == 0) row_kernel<M, 0, 1>(P, G, w, fin, o);
    else if (c0 == 2) row_kernel<M, 2, 1>(P, G, w, fin, o);
    else if (c1 == 0) row_kernel<M, 1, 0>(P, G, w, fin, o);
    else row_kernel<M, 1, 2>(P, G, w, fin, o);
}

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
                double v = std::min(std::max(cam[c] * gain, 0.0), 1.0);
                if (noisy) {
                    const uint64_t q = static_cast<uint64_t>(y * w + x);
                    double z0, z1;
                    rng.normal2(q >> 1, z0, z1);
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
    // Rows of all images in one parallel loop; each thread keeps its own row rings.
    parallel_chunks(n * h, threads, [&](int, int64_t b, int64_t e) {
        int64_t current = -1;
        std::unique_ptr<MosaicRows<In>> mos;
        std::unique_ptr<GreenRows<In>> grn;
        for (int64_t row = b; row < e; ++row) {
            const int64_t i = row / h, y = row % h;
            if (i != current) {
                mos = std::make_unique<MosaicRows<In>>(mosaic + i * h * w, h, w, p);
                if (ha) grn = std::make_unique<GreenRows<In>>(*mos, cfa, h, w);
                current = i;
            }
            Window P, G{};
            for (int k = 0; k < 5; ++k) P.rows[k] = mos->row(y - 2 + k);
            if (ha) {
                for (int k = 1; k < 4; ++k) G.rows[k] = grn->row(y - 2 + k);
            }
            const int c0 = cfa[(y & 1) * 2], c1 = cfa[(y & 1) * 2 + 1];
            Out* o = out + row * w * 3;
            switch (p.method) {
                case Demosaic::Bilinear: dispatch_row<Demosaic::Bilinear>(c0, c1, P, G, w, finish, o); break;
                case Demosaic::Malvar: dispatch_row<Demosaic::Malvar>(c0, c1, P, G, w, finish, o); break;
                case Demosaic::HamiltonAdams: dispatch_row<Demosaic::HamiltonAdams>(c0, c1, P, G, w, finish, o); break;
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
