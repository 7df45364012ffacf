// Bindings for the sharpening kernel (instab.environments.devices.unsharp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <string>

#include "bind_util.hpp"
#include "sharpen.hpp"

namespace py = pybind11;
using namespace instab::bind;

namespace {

py::array run_unsharp(const py::array& images, double amount, int threads) {
    require_ndim(images, "images", 4);
    require_c_contiguous(images, "images");
    if (!is_dtype<uint8_t>(images)) throw py::type_error("images: expected uint8, got " + dtype_str(images));
    // Beyond float32's range the cast to float would be undefined: refuse, as for NaN and inf.
    if (!(std::fabs(amount) <= static_cast<double>(std::numeric_limits<float>::max()))) {
        throw py::value_error("amount: must be finite (and within float32's range), got " + std::to_string(amount));
    }
    const int64_t n = images.shape(0), h = images.shape(1), w = images.shape(2), c = images.shape(3);
    if (h < 1 || w < 1 || c < 1) throw py::value_error("images: empty image of shape " + shape_str(images));
    py::array_t<uint8_t> out({n, h, w, c});
    const auto* src = static_cast<const uint8_t*>(images.data());
    uint8_t* dst = out.mutable_data();
    // numpy multiplies a float32 array by a Python float in float32.
    const float a = static_cast<float>(amount);
    {
        py::gil_scoped_release release;
        instab::kernels::unsharp(src, n, h, w, c, a, dst, threads);
    }
    return out;
}

}  // namespace

void register_sharpen(py::module_& m) {
    m.def("unsharp", &run_unsharp, py::arg("images"), py::arg("amount"), py::arg("threads") = 0,
          "Unsharp mask of uint8 [n,h,w,c] images (see instab.environments.devices.unsharp).");
}
