// Bindings for the raw pipeline kernels (unprocess, develop).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cctype>
#include <cmath>
#include <string>

#include "bind_util.hpp"
#include "isp.hpp"

namespace py = pybind11;
using namespace instab::bind;
namespace k = instab::kernels;

namespace {

std::array<int, 4> parse_pattern(const std::string& pattern) {
    if (pattern.size() != 4) throw py::value_error("pattern: expected one of rggb, grbg, gbrg, bggr, got '" + pattern + "'");
    std::array<int, 4> cfa{};
    for (int i = 0; i < 4; ++i) {
        const char ch = static_cast<char>(std::tolower(static_cast<unsigned char>(pattern[static_cast<size_t>(i)])));
        if (ch == 'r') cfa[i] = 0;
        else if (ch == 'g') cfa[i] = 1;
        else if (ch == 'b') cfa[i] = 2;
        else throw py::value_error("pattern: expected one of rggb, grbg, gbrg, bggr, got '" + pattern + "'");
    }
    try {
        k::check_bayer(cfa.data());
    } catch (const std::invalid_argument&) {
        throw py::value_error("pattern: '" + pattern + "' is not a Bayer layout (expected rggb, grbg, gbrg or bggr)");
    }
    return cfa;
}

k::Gamma parse_gamma(const std::string& s) {
    if (s == "linear") return k::Gamma::Linear;
    if (s == "srgb") return k::Gamma::SRGB;
    if (s == "bt709") return k::Gamma::BT709;
    throw py::value_error("gamma: expected 'srgb', 'bt709' or 'linear', got '" + s + "'");
}

k::Tone parse_tone(const std::string& s) {
    if (s == "none") return k::Tone::None;
    if (s == "smoothstep") return k::Tone::Smoothstep;
    throw py::value_error("tone: expected 'none' or 'smoothstep', got '" + s + "'");
}

k::Demosaic parse_demosaic(const std::string& s) {
    if (s == "bilinear") return k::Demosaic::Bilinear;
    if (s == "malvar") return k::Demosaic::Malvar;
    if (s == "ha") return k::Demosaic::HamiltonAdams;
    throw py::value_error("demosaic: expected 'bilinear', 'malvar' or 'ha', got '" + s + "'");
}

// A 3x3 float64 C-contiguous matrix, checked for finiteness.
void read_matrix(const py::array& a, const char* name, double out[9]) {
    require_ndim(a, name, 2);
    if (a.shape(0) != 3 || a.shape(1) != 3) {
        throw py::value_error(std::string(name) + ": expected shape (3, 3), got " + shape_str(a));
    }
    auto m = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
    if (!m) throw py::type_error(std::string(name) + ": expected a real 3x3 matrix");
    for (int i = 0; i < 9; ++i) {
        out[i] = m.data()[i];
        if (!std::isfinite(out[i])) throw py::value_error(std::string(name) + ": entries must be finite");
    }
}

void check_size(int64_t h, int64_t w, const char* name) {
    if (h < 2 || w < 2) {
        throw py::value_error(std::string(name) + ": " + std::to_string(h) + "x" + std::to_string(w) +
                              " is too small for a 2x2 Bayer pattern (need at least 2x2)");
    }
}

py::array run_unprocess(const py::array& images, const std::string& pattern, const py::array& rgb_to_cam,
                        std::array<double, 3> inv_gains, bool highlight_safe, const std::string& tone,
                        const std::string& gamma, std::array<double, 4> black, double white, double shot_noise,
                        double read_noise, uint64_t seed, uint64_t first_index, int threads) {
    if (!is_dtype<uint8_t>(images)) throw py::type_error("images: expected uint8, got " + dtype_str(images));
    require_ndim(images, "images", 4);
    require_c_contiguous(images, "images");
    if (images.shape(3) != 3) throw py::value_error("images: expected 3 channels (RGB), got shape " + shape_str(images));
    const int64_t n = images.shape(0), h = images.shape(1), w = images.shape(2);
    check_size(h, w, "images");
    k::UnprocessParams p;
    const auto cfa = parse_pattern(pattern);
    std::copy(cfa.begin(), cfa.end(), p.cfa);
    read_matrix(rgb_to_cam, "rgb_to_cam", p.rgb_to_cam);
    for (int i = 0; i < 3; ++i) {
        if (!(inv_gains[i] > 0) || !std::isfinite(inv_gains[i])) {
            throw py::value_error("wb_gains: must be positive and finite");
        }
        p.inv_gains[i] = inv_gains[i];
    }
    p.highlight_safe = highlight_safe;
    p.tone = parse_tone(tone);
    p.gamma = parse_gamma(gamma);
    if (!(white > 0) || white > 65535) throw py::value_error("white_level: must be in (0, 65535], got " + std::to_string(white));
    for (int i = 0; i < 4; ++i) {
        if (!(black[i] >= 0) || !(black[i] < white)) {
            throw py::value_error("black_level: must be >= 0 and below white_level, got " + std::to_string(black[i]));
        }
        p.black[i] = black[i];
    }
    p.white = white;
    if (!(shot_noise >= 0) || !std::isfinite(shot_noise)) throw py::value_error("shot_noise: must be a finite variance >= 0");
    if (!(read_noise >= 0) || !std::isfinite(read_noise)) throw py::value_error("read_noise: must be a finite variance >= 0");
    p.shot_noise = shot_noise;
    p.read_noise = read_noise;
    p.seed = seed;
    p.first_index = first_index;
    py::array_t<uint16_t> out({n, h, w});
    const uint8_t* src = static_cast<const uint8_t*>(images.data());
    uint16_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        k::unprocess(src, n, h, w, p, dst, threads);
    }
    return out;
}

template <class In, class Out>
py::array develop_typed(const py::array& mosaic, const k::DevelopParams& p, int threads) {
    const int64_t n = mosaic.shape(0), h = mosaic.shape(1), w = mosaic.shape(2);
    py::array_t<Out> out({n, h, w, int64_t{3}});
    const In* src = static_cast<const In*>(mosaic.data());
    Out* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        k::develop<In, Out>(src, n, h, w, p, dst, threads);
    }
    return out;
}

template <class In>
py::array develop_in(const py::array& mosaic, const k::DevelopParams& p, const std::string& out_dtype, int threads) {
    if (out_dtype == "uint8") return develop_typed<In, uint8_t>(mosaic, p, threads);
    if (out_dtype == "uint16") return develop_typed<In, uint16_t>(mosaic, p, threads);
    if (out_dtype == "float32") return develop_typed<In, float>(mosaic, p, threads);
    throw py::value_error("out_dtype: expected 'uint8', 'uint16' or 'float32', got '" + out_dtype + "'");
}

py::array run_develop(const py::array& mosaic, const std::string& pattern, std::array<double, 4> black, double white,
                      std::array<double, 3> gains, const py::array& cam_to_rgb, const std::string& demosaic,
                      const std::string& gamma, const std::string& tone, const std::string& out_dtype, int threads) {
    require_ndim(mosaic, "mosaic", 3);
    require_c_contiguous(mosaic, "mosaic");
    const bool u16 = is_dtype<uint16_t>(mosaic), f32 = is_dtype<float>(mosaic);
    if (!u16 && !f32) throw py::type_error("mosaic: expected uint16 or float32, got " + dtype_str(mosaic));
    check_size(mosaic.shape(1), mosaic.shape(2), "mosaic");
    k::DevelopParams p;
    const auto cfa = parse_pattern(pattern);
    std::copy(cfa.begin(), cfa.end(), p.cfa);
    if (!std::isfinite(white)) throw py::value_error("white_level: must be finite");
    for (int i = 0; i < 4; ++i) {
        if (!std::isfinite(black[i]) || !(black[i] < white)) {
            throw py::value_error("black_level: must be finite and below white_level (" + std::to_string(white) +
                                  "), got " + std::to_string(black[i]));
        }
        p.black[i] = static_cast<float>(black[i]);
    }
    p.white = static_cast<float>(white);
    for (int i = 0; i < 3; ++i) {
        if (!(gains[i] > 0) || !std::isfinite(gains[i])) throw py::value_error("wb_gains: must be positive and finite");
        p.gains[i] = static_cast<float>(gains[i]);
    }
    double m[9];
    read_matrix(cam_to_rgb, "cam_to_rgb", m);
    for (int i = 0; i < 9; ++i) p.cam_to_rgb[i] = static_cast<float>(m[i]);
    p.method = parse_demosaic(demosaic);
    p.gamma = parse_gamma(gamma);
    p.tone = parse_tone(tone);
    return u16 ? develop_in<uint16_t>(mosaic, p, out_dtype, threads) : develop_in<float>(mosaic, p, out_dtype, threads);
}

}  // namespace

void register_isp(py::module_& m) {
    m.def("isp_unprocess", &run_unprocess, py::arg("images"), py::arg("pattern"), py::arg("rgb_to_cam"),
          py::arg("inv_gains"), py::arg("highlight_safe"), py::arg("tone"), py::arg("gamma"), py::arg("black"),
          py::arg("white"), py::arg("shot_noise"), py::arg("read_noise"), py::arg("seed"), py::arg("first_index"),
          py::arg("threads") = 0,
          "sRGB uint8 [n,h,w,3] -> Bayer uint16 [n,h,w] (see instab.isp.unprocess).");
    m.def("isp_develop", &run_develop, py::arg("mosaic"), py::arg("pattern"), py::arg("black"), py::arg("white"),
          py::arg("gains"), py::arg("cam_to_rgb"), py::arg("demosaic"), py::arg("gamma"), py::arg("tone"),
          py::arg("out_dtype"), py::arg("threads") = 0,
          "Bayer uint16/float32 [n,h,w] -> RGB [n,h,w,3] (see instab.isp.develop).");
}
