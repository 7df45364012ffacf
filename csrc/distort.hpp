// Photometric distortions and pixel noise, fused into one pass over each image.
//
// A chain is a list of operations applied in order to every pixel, in float32
// [0, 1] units (uint8 input is divided by 255; float32 input is clipped to
// [0, 1], NaN -> 0). Each operation's parameters are fixed or drawn uniformly
// per image from [lo, hi] by CounterRng(op.seed, first_index + image), so the
// result of an image depends only on its pixels, the chain and its global
// index: never on the thread count or on how a batch was split.
//
// Operation semantics (x is one colour channel, all arithmetic in float32):
//   brightness(delta)    x' = clip(x + delta)
//   contrast(factor)     x' = clip((x - m) * factor + m), m = the channel's mean
//                        over the image *as it enters this operation*
//   saturation(factor)   HSV: s' = min(s * factor, 1)
//   hue(delta)           HSV: h' = h + delta turns (wrapped), delta in [-1, 1]
//   gamma(g)             x' = x ^ g
//   gaussian(sigma)      x' = clip(x + sigma * z)
//   poisson(shot, read)  x' = clip(x + sqrt(shot * x + read^2) * z)
//                        (the Gaussian approximation of Poisson-Gaussian noise)
// z is a standard normal from Box-Muller on Philox draws; see distort.cpp for the
// exact counter layout (tests/reference.py reproduces it). Alpha (4th channel)
// passes through unchanged; saturation and hue leave 1-channel images as they are.
// Output: float32, or uint8 as floor(x * 255 + 0.5).
#pragma once

#include <cstdint>

namespace instab::kernels {

enum class DistortKind : int32_t {
    Brightness = 0,
    Contrast = 1,
    Saturation = 2,
    Hue = 3,
    Gamma = 4,
    Gaussian = 5,
    Poisson = 6,
};

constexpr int kDistortParams = 2;  // parameters per operation (unused ones ignored)
constexpr int kMaxDistortOps = 64;

struct DistortOp {
    DistortKind kind;
    uint64_t seed;               // keys this operation's draws, with the image index
    double lo[kDistortParams];   // parameter k is lo[k] + (hi[k] - lo[k]) * u_k
    double hi[kDistortParams];
};

// Parameters each image gets: params[(i * n_ops + j) * 2 + k]. Throws
// std::invalid_argument when an operation's range is invalid.
void draw_distort_params(const DistortOp* ops, int n_ops, int64_t n, uint64_t first_index,
                         double* params);

// Applies the chain to n images of h x w x c (c in 1, 3, 4), NHWC, contiguous.
// params_out (may be null) receives the drawn parameters as above.
template <class In, class Out>
void distort_chain(const In* in, Out* out, int64_t n, int64_t h, int64_t w, int64_t c,
                   const DistortOp* ops, int n_ops, uint64_t first_index, int threads,
                   double* params_out);

// Raw Philox4x32-10 blocks and CounterRng::uniform2 pairs for m (stream,
// counter) pairs, so that tests can reproduce every draw.
void philox_blocks(uint64_t seed, const uint64_t* streams, const uint64_t* counters, int64_t m,
                   uint32_t* words);
void philox_uniform2(uint64_t seed, const uint64_t* streams, const uint64_t* counters, int64_t m,
                     double* uniforms);

}  // namespace instab::kernels
