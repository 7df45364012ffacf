// Bindings for demosaicing alone (instab.isp.demosaic).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <string>

#include "bind_util.hpp"
#include "demosaic.hpp"

namespace py = pybind11;
using namespace instab::bind;
namespace k = instab::kernels;

namespace {

k::Demosaic demosaic_method(const std::string& s) {
    if (s == "bilinear") return k::Demosaic::Bilinear;
    if (s == "malvar") return k::Demosaic::Malvar;
    if (s == "ha") return k::Demosaic::HamiltonAdams;
    throw py::value_error("method: expected 'bilinear', 'malvar' or 'ha', got '" + s + "'");
}

template <class T>
py::array demosaic_typed(const py::array& mosaic, const int cfa[4], k::Demosaic method, bool to_float, int threads) {
    const int64_t n = mosaic.shape(0), h = mosaic.shape(1), w = mosaic.shape(2);
    const T* src = static_cast<const T*>(mosaic.data());
    py::array out = to_float ? py::array(py::array_t<float>({n, h, w, int64_t{3}}))
                             : py::array(py::array_t<T>({n, h, w, int64_t{3}}));
    T* oi = to_float ? nullptr : static_cast<T*>(out.mutable_data());
    float* of = to_float ? static_cast<float*>(out.mutable_data()) : nullptr;
    {
        py::gil_scoped_release release;
        k::demosaic<T>(src, n, h, w, cfa, method, oi, of, threads);
    }
    return out;
}

py::array run_demosaic(const py::array& mosaic, std::array<int, 4> cfa, const std::string& method,
                       const std::string& out_dtype, int threads) {
    require_ndim(mosaic, "mosaic", 3);
    require_c_contiguous(mosaic, "mosaic");
    const bool u8 = is_dtype<uint8_t>(mosaic), u16 = is_dtype<uint16_t>(mosaic);
    if (!u8 && !u16) throw py::type_error("mosaic: expected uint8 or uint16, got " + dtype_str(mosaic));
    const std::string same = u8 ? "uint8" : "uint16";
    if (out_dtype != same && out_dtype != "float32") {
        throw py::value_error("out_dtype: expected '" + same + "' (the mosaic's) or 'float32', got '" + out_dtype + "'");
    }
    if (mosaic.shape(1) < 2 || mosaic.shape(2) < 2) {
        throw py::value_error("mosaic: " + std::to_string(mosaic.shape(1)) + "x" + std::to_string(mosaic.shape(2)) +
                              " is too small for a 2x2 Bayer pattern (need at least 2x2)");
    }
    try {
        k::check_bayer(cfa.data());
    } catch (const std::invalid_argument& err) {
        throw py::value_error(err.what());
    }
    const k::Demosaic m = demosaic_method(method);
    const bool to_float = out_dtype == "float32";
    return u8 ? demosaic_typed<uint8_t>(mosaic, cfa.data(), m, to_float, threads)
              : demosaic_typed<uint16_t>(mosaic, cfa.data(), m, to_float, threads);
}

}  // namespace

void register_demosaic(py::module_& m) {
    m.def("isp_demosaic", &run_demosaic, py::arg("mosaic"), py::arg("cfa"), py::arg("method"), py::arg("out_dtype"),
          py::arg("threads") = 0, "Bayer uint8/uint16 [n,h,w] -> RGB [n,h,w,3] (see instab.isp.demosaic).");
}
