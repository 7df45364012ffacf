#include "distort.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel.hpp"
#include "rng.hpp"

// The pixel loops are compiled for baseline x86-64 (SSE2), AVX2 and AVX-512
// (x86-64-v4), and the best one the CPU supports is picked at run time; the
// Philox loop gets no AVX-512 clone, which measured slower. The arithmetic is the
// same IEEE float operations in every clone (no FMA contraction), so results are
// identical.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define INSTAB_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#define INSTAB_CLONES_RNG __attribute__((target_clones("avx2", "default")))
#else
#define INSTAB_CLONES
#define INSTAB_CLONES_RNG
#endif

namespace instab::kernels {

namespace {

// Pixels per tile: three float planes of this many values stay in L1 while the
// whole chain runs over them, so each image is read and written once.
constexpr int64_t kTile = 256;
// Noise draws for element e = pixel * colour_channels + channel come from
// Philox block kNoiseCounter + e / 4 (lane e % 4); block 0 holds the parameters.
constexpr uint64_t kNoiseCounter = uint64_t{1} << 32;

inline float clip01(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }

inline float to_unit(float v) { return clip01(v); }

// Output rounding: x is in [0, 1] here, so truncation equals floor(x * 255 + 0.5).
inline void from_unit(float x, uint8_t& o) { o = static_cast<uint8_t>(static_cast<int32_t>(x * 255.0f + 0.5f)); }
inline void from_unit(float x, float& o) { o = x; }

inline int32_t float_bits(float x) {
    int32_t i;
    std::memcpy(&i, &x, sizeof i);
    return i;
}
inline float bits_float(int32_t i) {
    float x;
    std::memcpy(&x, &i, sizeof x);
    return x;
}

// Elementary functions as straight-line float code (Cephes polynomials): they
// vectorize, and tests/reference.py repeats them operation by operation, so the
// noise and gamma are reproduced bit for bit rather than to a libm's accuracy.

// Natural log for x > 0 (finite, normal).
inline float log_f(float x) {
    const int32_t bits = float_bits(x);
    int32_t e = ((bits >> 23) & 0xff) - 126;  // x = m * 2^e, m in [0.5, 1)
    float m = bits_float((bits & 0x007fffff) | 0x3f000000);
    const int32_t small = m < 0.707106781186547524f;
    e = e - small;
    m = (small ? m + m : m) - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    const float fe = static_cast<float>(e);
    y = y + -2.12194440e-4f * fe;
    y = y + -0.5f * z;
    return (m + y) + 0.693359375f * fe;
}

// exp(x) for x <= 0; arguments below -86 give exp(-86) (~4e-38), which keeps
// every intermediate a normal float (denormals are very slow on x86).
inline float exp_f(float x) {
    x = std::max(x, -86.0f);
    const float t = x * 1.44269504088896341f + 0.5f;
    int32_t n = static_cast<int32_t>(t);  // floor(t); t may be negative
    n = n - static_cast<int32_t>(static_cast<float>(n) > t);
    const float fn = static_cast<float>(n);
    x = x - fn * 0.693359375f;
    x = x - fn * -2.12194440e-4f;
    const float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    return y * bits_float((n + 127) << 23);
}

// x^g for x in [0, 1], g > 0 (0 for x = 0). Denormal x is raised to the smallest
// normal float first; the result is masked by multiplying by 0 or 1, which
// keeps the loop free of branches.
inline float pow_f(float x, float g) {
    const float r = exp_f(g * log_f(std::max(x, 1.17549435e-38f)));
    return r * static_cast<float>(x > 0.0f);
}

// cos(2 pi u) and sin(2 pi u) for u in [0, 1).
inline void sincos_turn(float u, float& c, float& s) {
    const float t = u * 8.0f;  // octants (exact)
    int32_t j = static_cast<int32_t>(t);
    j = (j + 1) & ~1;  // nearest even octant
    const float x = (t - static_cast<float>(j)) * 0.785398163397448310f;  // [-pi/4, pi/4]
    const float z = x * x;
    float sp = -1.9515295891e-4f;
    sp = sp * z + 8.3321608736e-3f;
    sp = sp * z - 1.6666654611e-1f;
    const float sx = sp * z * x + x;
    float cp = 2.443315711809948e-5f;
    cp = cp * z - 1.388731625493765e-3f;
    cp = cp * z + 4.166664568298827e-2f;
    const float cx = cp * z * z - 0.5f * z + 1.0f;
    const int32_t q = (j >> 1) & 3;  // quarter turns to add
    c = q == 0 ? cx : (q == 1 ? -sx : (q == 2 ? -cx : sx));
    s = q == 0 ? sx : (q == 1 ? cx : (q == 2 ? -sx : -cx));
}

const char* kind_name(DistortKind k) {
    switch (k) {
        case DistortKind::Brightness: return "brightness";
        case DistortKind::Contrast: return "contrast";
        case DistortKind::Saturation: return "saturation";
        case DistortKind::Hue: return "hue";
        case DistortKind::Gamma: return "gamma";
        case DistortKind::Gaussian: return "gaussian";
        case DistortKind::Poisson: return "poisson";
    }
    return "?";
}

int n_params(DistortKind k) { return k == DistortKind::Poisson ? 2 : 1; }

// Valid parameter interval per kind; ranges must lie inside it.
void check_op(const DistortOp& op, int j) {
    const int kind = static_cast<int>(op.kind);
    if (kind < 0 || kind > static_cast<int>(DistortKind::Poisson)) {
        throw std::invalid_argument("ops[" + std::to_string(j) + "]: unknown operation code " +
                                    std::to_string(kind));
    }
    double min_v = -1.0, max_v = 1.0;
    switch (op.kind) {
        case DistortKind::Brightness: min_v = -1.0; max_v = 1.0; break;
        case DistortKind::Hue: min_v = -1.0; max_v = 1.0; break;
        case DistortKind::Contrast:
        case DistortKind::Saturation: min_v = 0.0; max_v = 1e6; break;
        case DistortKind::Gamma: min_v = 1e-6; max_v = 1e6; break;
        case DistortKind::Gaussian:
        case DistortKind::Poisson: min_v = 0.0; max_v = 1e6; break;
    }
    for (int k = 0; k < n_params(op.kind); ++k) {
        const double lo = op.lo[k], hi = op.hi[k];
        if (!(lo <= hi) || !(lo >= min_v) || !(hi <= max_v)) {
            throw std::invalid_argument("ops[" + std::to_string(j) + "] (" + kind_name(op.kind) +
                                        "): parameter range [" + std::to_string(lo) + ", " +
                                        std::to_string(hi) + "] must satisfy " + std::to_string(min_v) +
                                        " <= lo <= hi <= " + std::to_string(max_v));
        }
    }
}

void draw_one(const DistortOp* ops, int n_ops, uint64_t stream, double* params) {
    for (int j = 0; j < n_ops; ++j) {
        double u[2];
        CounterRng(ops[j].seed, stream).uniform2(0, u[0], u[1]);
        for (int k = 0; k < kDistortParams; ++k) {
            params[j * kDistortParams + k] = ops[j].lo[k] + (ops[j].hi[k] - ops[j].lo[k]) * u[k];
        }
    }
}

// Philox4x32-10 (as rng.hpp) for kLanes consecutive counters at once, written
// lane-wise so that the 32x32->64-bit products vectorize; u gets the four
// words of block b as uniforms u[4b..4b+3] (23 random bits + 0.5, exact in
// float, in (0, 1)).
constexpr int kLanes = 8;

INSTAB_CLONES_RNG void philox_uniforms(uint64_t seed, uint64_t stream, uint64_t counter0, int64_t blocks, float* u) {
    for (int64_t b0 = 0; b0 < blocks; b0 += kLanes) {
        uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
        for (int l = 0; l < kLanes; ++l) {
            const uint64_t ctr = counter0 + static_cast<uint64_t>(b0 + l);
            c0[l] = static_cast<uint32_t>(ctr);
            c1[l] = static_cast<uint32_t>(ctr >> 32);
            c2[l] = static_cast<uint32_t>(stream);
            c3[l] = static_cast<uint32_t>(stream >> 32);
        }
        uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
        for (int round = 0; round < 10; ++round) {
            for (int l = 0; l < kLanes; ++l) {
                const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0[l];
                const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2[l];
                const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
                const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
                c1[l] = static_cast<uint32_t>(p1);
                c3[l] = static_cast<uint32_t>(p0);
                c0[l] = n0;
                c2[l] = n2;
            }
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        float* o = u + 4 * b0;
        for (int l = 0; l < kLanes; ++l) {
            o[4 * l + 0] = (static_cast<float>(c0[l] >> 9) + 0.5f) * (1.0f / 8388608.0f);
            o[4 * l + 1] = (static_cast<float>(c1[l] >> 9) + 0.5f) * (1.0f / 8388608.0f);
            o[4 * l + 2] = (static_cast<float>(c2[l] >> 9) + 0.5f) * (1.0f / 8388608.0f);
            o[4 * l + 3] = (static_cast<float>(c3[l] >> 9) + 0.5f) * (1.0f / 8388608.0f);
        }
    }
}

// Standard normals z[0..count) for noise elements [e0, e0 + count) of one image:
// element e is lane e % 4 of Philox block kNoiseCounter + e / 4, the lanes
// being (z0, z1, z2, z3) of Box-Muller on the block's uniforms (u0, u1), (u2, u3).
// u needs room for 8 * (count / 4 + kLanes + 2) values, z for count + 4.
INSTAB_CLONES_RNG void normals(uint64_t seed, uint64_t stream, int64_t e0, int64_t count, float* u, float* z) {
    const int64_t first = e0 / 4, skip = e0 % 4;
    const int64_t blocks = (skip + count + 3) / 4;
    philox_uniforms(seed, stream, kNoiseCounter + static_cast<uint64_t>(first), blocks, u);
    float* zz = z;  // z[k] is element e0 + k; zz[k] is element 4 * first + k
    if (skip) zz = u + 4 * (blocks + kLanes);  // fill a scratch area past the uniforms, then copy
    for (int64_t q = 0; q < 2 * blocks; ++q) {  // Box-Muller on (u[2q], u[2q+1])
        const float r = std::sqrt(-2.0f * log_f(u[2 * q]));
        float c, sn;
        sincos_turn(u[2 * q + 1], c, sn);
        zz[2 * q] = r * c;
        zz[2 * q + 1] = r * sn;
    }
    if (skip) std::memcpy(z, zz + skip, static_cast<size_t>(count) * sizeof(float));
}

struct Tile {
    float ch[3][kTile];
    float u[8 * (kTile / 4 + kLanes + 2)], z[kTile + 4];  // noise scratch for one channel
};

// HSV helpers on one pixel; r, g, b in [0, 1]. Written without branches so the
// pixel loops vectorize; tests/reference.py mirrors every operation.
inline void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v) {
    const float mx = std::max(r, std::max(g, b));
    const float mn = std::min(r, std::min(g, b));
    const float d = mx - mn;
    v = mx;
    s = mx > 0.0f ? d / (mx > 0.0f ? mx : 1.0f) : 0.0f;
    const bool is_r = mx == r, is_g = mx == g;
    const float num = is_r ? g - b : (is_g ? b - r : r - g);
    const float off = is_r ? 0.0f : (is_g ? 2.0f : 4.0f);
    float hh = num / (d > 0.0f ? d : 1.0f) + off;
    hh = hh < 0.0f ? hh + 6.0f : hh;
    h = d > 0.0f ? hh : 0.0f;
}

inline float hsv_channel(float n, float h, float s, float v) {
    float k = n + h;
    k = k >= 6.0f ? k - 6.0f : k;
    const float t = std::max(0.0f, std::min(k, std::min(4.0f - k, 1.0f)));
    return v - v * s * t;
}

inline void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b) {
    r = hsv_channel(5.0f, h, s, v);
    g = hsv_channel(3.0f, h, s, v);
    b = hsv_channel(1.0f, h, s, v);
}

// Runs ops [0, n_run) over np pixels of the tile starting at pixel p0.
INSTAB_CLONES void run_ops(Tile& t, int64_t np, int nc, int64_t p0, int64_t npix, const DistortOp* ops, int n_run,
             const double* params, const float* means, uint64_t stream) {
    for (int j = 0; j < n_run; ++j) {
        const float a = static_cast<float>(params[j * kDistortParams]);
        switch (ops[j].kind) {
            case DistortKind::Brightness:
                for (int c = 0; c < nc; ++c) {
                    float* x = t.ch[c];
                    for (int64_t p = 0; p < np; ++p) x[p] = clip01(x[p] + a);
                }
                break;
            case DistortKind::Contrast:
                for (int c = 0; c < nc; ++c) {
                    float* x = t.ch[c];
                    const float m = means[j * 3 + c];
                    for (int64_t p = 0; p < np; ++p) x[p] = clip01((x[p] - m) * a + m);
                }
                break;
            case DistortKind::Saturation:
                if (nc < 3) break;
                for (int64_t p = 0; p < np; ++p) {
                    float h, s, v;
                    rgb_to_hsv(t.ch[0][p], t.ch[1][p], t.ch[2][p], h, s, v);
                    s = std::min(s * a, 1.0f);
                    hsv_to_rgb(h, s, v, t.ch[0][p], t.ch[1][p], t.ch[2][p]);
                }
                break;
            case DistortKind::Hue: {
                if (nc < 3) break;
                const float shift = static_cast<float>(params[j * kDistortParams] * 6.0);
                for (int64_t p = 0; p < np; ++p) {
                    float h, s, v;
                    rgb_to_hsv(t.ch[0][p], t.ch[1][p], t.ch[2][p], h, s, v);
                    h = h + shift;
                    h = h < 0.0f ? h + 6.0f : h;
                    h = h >= 6.0f ? h - 6.0f : h;
                    hsv_to_rgb(h, s, v, t.ch[0][p], t.ch[1][p], t.ch[2][p]);
                }
                break;
            }
            case DistortKind::Gamma:
                for (int c = 0; c < nc; ++c) {
                    float* x = t.ch[c];
                    for (int64_t p = 0; p < np; ++p) x[p] = pow_f(x[p], a);
                }
                break;
            case DistortKind::Gaussian:
            case DistortKind::Poisson: {
                // Noise element e = channel * npix + pixel (planar order).
                const bool gauss = ops[j].kind == DistortKind::Gaussian;
                const double read = params[j * kDistortParams + 1];
                const float read2 = static_cast<float>(read * read);
                for (int c = 0; c < nc; ++c) {
                    normals(ops[j].seed, stream, c * npix + p0, np, t.u, t.z);
                    float* x = t.ch[c];
                    const float* z = t.z;
                    if (gauss) {
                        for (int64_t p = 0; p < np; ++p) x[p] = clip01(x[p] + a * z[p]);
                    } else {
                        for (int64_t p = 0; p < np; ++p) x[p] = clip01(x[p] + std::sqrt(a * x[p] + read2) * z[p]);
                    }
                }
                break;
            }
        }
    }
}

// uint8 -> [0, 1] as v / 255 (a float division, as the reference does).
inline float to_unit(uint8_t v) { return static_cast<float>(v) / 255.0f; }

template <class In>
INSTAB_CLONES void load(Tile& t, const In* px, int64_t np, int64_t c, int nc) {
    if (nc == 3) {
        for (int64_t p = 0; p < np; ++p) {
            t.ch[0][p] = to_unit(px[p * c]);
            t.ch[1][p] = to_unit(px[p * c + 1]);
            t.ch[2][p] = to_unit(px[p * c + 2]);
        }
    } else {
        for (int64_t p = 0; p < np; ++p) t.ch[0][p] = to_unit(px[p * c]);
    }
}

template <class In, class Out>
INSTAB_CLONES void store(const Tile& t, const In* px, Out* o, int64_t np, int64_t c, int nc) {
    if (nc == 3) {
        for (int64_t p = 0; p < np; ++p) {
            from_unit(t.ch[0][p], o[p * c]);
            from_unit(t.ch[1][p], o[p * c + 1]);
            from_unit(t.ch[2][p], o[p * c + 2]);
        }
    } else {
        for (int64_t p = 0; p < np; ++p) from_unit(t.ch[0][p], o[p * c]);
    }
    if (c == 4) {  // alpha passes through (converted to the output type)
        for (int64_t p = 0; p < np; ++p) from_unit(to_unit(px[p * c + 3]), o[p * c + 3]);
    }
}

// Sum of n floats in double, in a fixed order (8 interleaved partial sums, so
// the loop vectorizes without reassociation); sums of values in [0, 1] this
// size are exact in double in practice, so the order matches numpy's sum.
INSTAB_CLONES double tile_sum(const float* x, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t p = 0;
    for (; p + 8 <= n; p += 8) {
        for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(x[p + l]);
    }
    for (; p < n; ++p) acc[0] += static_cast<double>(x[p]);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class In, class Out>
void distort_image(const In* in, Out* out, int64_t npix, int64_t c, const DistortOp* ops, int n_ops,
                   const double* params, uint64_t stream, Tile& t, std::vector<float>& means) {
    const int nc = c >= 3 ? 3 : 1;
    // Contrast needs the mean of its own input: one read-only pass per contrast
    // operation computes it (running the operations before it), then one pass
    // writes the output.
    for (int j = 0; j < n_ops; ++j) {
        if (ops[j].kind != DistortKind::Contrast) continue;
        double sum[3] = {0.0, 0.0, 0.0};
        for (int64_t p0 = 0; p0 < npix; p0 += kTile) {
            const int64_t np = std::min(kTile, npix - p0);
            load(t, in + p0 * c, np, c, nc);
            run_ops(t, np, nc, p0, npix, ops, j, params, means.data(), stream);
            for (int k = 0; k < nc; ++k) sum[k] += tile_sum(t.ch[k], np);
        }
        for (int k = 0; k < 3; ++k) means[j * 3 + k] = static_cast<float>(sum[k] / static_cast<double>(npix));
    }
    for (int64_t p0 = 0; p0 < npix; p0 += kTile) {
        const int64_t np = std::min(kTile, npix - p0);
        load(t, in + p0 * c, np, c, nc);
        run_ops(t, np, nc, p0, npix, ops, n_ops, params, means.data(), stream);
        store(t, in + p0 * c, out + p0 * c, np, c, nc);
    }
}

}  // namespace

void draw_distort_params(const DistortOp* ops, int n_ops, int64_t n, uint64_t first_index, double* params) {
    if (n_ops < 0 || n_ops > kMaxDistortOps) {
        throw std::invalid_argument("ops: expected 0.." + std::to_string(kMaxDistortOps) + " operations, got " +
                                    std::to_string(n_ops));
    }
    for (int j = 0; j < n_ops; ++j) check_op(ops[j], j);
    for (int64_t i = 0; i < n; ++i) {
        draw_one(ops, n_ops, first_index + static_cast<uint64_t>(i), params + i * n_ops * kDistortParams);
    }
}

template <class In, class Out>
void distort_chain(const In* in, Out* out, int64_t n, int64_t h, int64_t w, int64_t c, const DistortOp* ops,
                   int n_ops, uint64_t first_index, int threads, double* params_out) {
    if (n < 0 || h < 0 || w < 0) throw std::invalid_argument("images: negative dimension");
    if (c != 1 && c != 3 && c != 4) {
        throw std::invalid_argument("images: expected 1, 3 or 4 channels, got " + std::to_string(c));
    }
    std::vector<double> params(static_cast<size_t>(std::max<int64_t>(n, 1) * std::max(n_ops, 1) * kDistortParams));
    draw_distort_params(ops, n_ops, n, first_index, params.data());
    if (params_out) std::copy(params.begin(), params.begin() + n * n_ops * kDistortParams, params_out);
    const int64_t npix = h * w;
    parallel_for(n, threads, [&](int64_t begin, int64_t end) {
        Tile tile;
        std::vector<float> means(static_cast<size_t>(std::max(n_ops, 1) * 3), 0.0f);
        for (int64_t i = begin; i < end; ++i) {
            distort_image(in + i * npix * c, out + i * npix * c, npix, c, ops, n_ops,
                          params.data() + i * n_ops * kDistortParams, first_index + static_cast<uint64_t>(i), tile,
                          means);
        }
    });
}

template void distort_chain<uint8_t, uint8_t>(const uint8_t*, uint8_t*, int64_t, int64_t, int64_t, int64_t,
                                              const DistortOp*, int, uint64_t, int, double*);
template void distort_chain<uint8_t, float>(const uint8_t*, float*, int64_t, int64_t, int64_t, int64_t,
                                            const DistortOp*, int, uint64_t, int, double*);
template void distort_chain<float, uint8_t>(const float*, uint8_t*, int64_t, int64_t, int64_t, int64_t,
                                            const DistortOp*, int, uint64_t, int, double*);
template void distort_chain<float, float>(const float*, float*, int64_t, int64_t, int64_t, int64_t,
                                          const DistortOp*, int, uint64_t, int, double*);

void philox_blocks(uint64_t seed, const uint64_t* streams, const uint64_t* counters, int64_t m, uint32_t* words) {
    for (int64_t i = 0; i < m; ++i) {
        const Philox4x32 r = philox4x32_10(seed, streams[i], counters[i]);
        for (int l = 0; l < 4; ++l) words[4 * i + l] = r.v[l];
    }
}

void philox_uniform2(uint64_t seed, const uint64_t* streams, const uint64_t* counters, int64_t m,
                     double* uniforms) {
    for (int64_t i = 0; i < m; ++i) {
        CounterRng(seed, streams[i]).uniform2(counters[i], uniforms[2 * i], uniforms[2 * i + 1]);
    }
}

}  // namespace instab::kernels
