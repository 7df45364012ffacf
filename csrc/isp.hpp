// Camera raw pipeline kernels: unprocess (sRGB -> Bayer mosaic, after Brooks et
// al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019) and develop
// (Bayer mosaic -> sRGB: black/white level, white balance, demosaic, colour
// matrix, gamma, tone curve).
//
// Bayer layout: cfa[p] is the colour (0 = R, 1 = G, 2 = B) of the pixel at
// (y % 2, x % 2), p = 2 * (y % 2) + (x % 2). Borders are mirrored without
// repeating the edge pixel (reflect-101), which keeps every pixel's colour.
#pragma once

#include <cstdint>

namespace instab::kernels {

enum class Gamma : int { Linear = 0, SRGB = 1, BT709 = 2 };
enum class Tone : int { None = 0, Smoothstep = 1 };
enum class Demosaic : int { Bilinear = 0, Malvar = 1, HamiltonAdams = 2 };

// The transfer functions, exact (double); the kernels use these to build tables.
double gamma_encode(Gamma g, double linear);   // linear -> encoded, [0,1] -> [0,1]
double gamma_decode(Gamma g, double encoded);  // inverse of gamma_encode
double tone_forward(Tone t, double x);         // smoothstep: 3x^2 - 2x^3
double tone_inverse(Tone t, double y);         // inverse smoothstep

// Throws std::invalid_argument unless cfa is a Bayer layout (one R, one B, two
// diagonal G).
void check_bayer(const int cfa[4]);

struct UnprocessParams {
    int cfa[4] = {0, 1, 1, 2};
    double rgb_to_cam[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major, linear sRGB -> camera
    double inv_gains[3] = {1, 1, 1};                      // camera R, G, B multipliers (1 / white balance)
    bool highlight_safe = true;  // Brooks' safe gain inversion: bright pixels keep gains near 1
    Tone tone = Tone::None;      // tone curve to invert
    Gamma gamma = Gamma::SRGB;   // transfer function to invert
    double black[4] = {0, 0, 0, 0};  // per 2x2 position
    double white = 65535;
    double shot_noise = 0;  // noise variance = shot_noise * x + read_noise, x in [0,1]
    double read_noise = 0;
    uint64_t seed = 0;
    uint64_t first_index = 0;  // image i draws from stream first_index + i
};

// images: uint8 [n, h, w, 3] sRGB; out: uint16 [n, h, w] with values in [0, white].
void unprocess(const uint8_t* images, int64_t n, int64_t h, int64_t w, const UnprocessParams& p, uint16_t* out,
               int threads);

struct DevelopParams {
    int cfa[4] = {0, 1, 1, 2};
    float black[4] = {0, 0, 0, 0};  // per 2x2 position
    float white = 65535;
    float gains[3] = {1, 1, 1};  // white balance multipliers for R, G, B
    float cam_to_rgb[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    Demosaic method = Demosaic::Malvar;
    Gamma gamma = Gamma::SRGB;
    Tone tone = Tone::None;
};

// mosaic: [n, h, w] uint16 or float (raw values, black/white as given);
// out: [n, h, w, 3] uint8 (0..255), uint16 (0..65535) or float ([0, 1]).
// h and w must be at least 2.
template <class In, class Out>
void develop(const In* mosaic, int64_t n, int64_t h, int64_t w, const DevelopParams& p, Out* out, int threads);

}  // namespace instab::kernels
