// Bindings for the preprocessing kernel (resize + centre crop + scaling/layout).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bind_util.hpp"
#include "preprocess.hpp"

namespace py = pybind11;
using namespace instab::bind;

namespace {

// Describes images[i] for the kernel: uint8, HW or HWC with 1/3/4 channels,
// pixels and channels packed (any row stride).
instab::kernels::ImageView image_view(const py::handle& item, size_t i) {
    const std::string name = "images[" + std::to_string(i) + "]";
    if (!py::isinstance<py::array>(item)) {
        throw py::type_error(name + ": expected a numpy array, got " +
                             py::str(py::type::of(item).attr("__name__")).cast<std::string>());
    }
    auto a = py::reinterpret_borrow<py::array>(item);
    if (!is_dtype<uint8_t>(a)) throw py::type_error(name + ": expected uint8, got " + dtype_str(a));
    if (a.ndim() != 2 && a.ndim() != 3) {
        throw py::value_error(name + ": expected an HxW or HxWxC array, got shape " + shape_str(a));
    }
    instab::kernels::ImageView v;
    v.height = a.shape(0);
    v.width = a.shape(1);
    v.channels = a.ndim() == 3 ? a.shape(2) : 1;
    if (v.channels != 1 && v.channels != 3 && v.channels != 4) {
        throw py::value_error(name + ": expected 1, 3 or 4 channels, got shape " + shape_str(a));
    }
    if (v.height < 1 || v.width < 1) {
        throw py::value_error(name + ": image must be at least 1x1, got shape " + shape_str(a));
    }
    const bool packed = a.strides(1) == v.channels && (a.ndim() == 2 || a.strides(2) == 1);
    if (!packed || a.strides(0) < v.width * v.channels) {
        throw py::value_error(name + ": pixels must be packed (C-contiguous rows); use np.ascontiguousarray");
    }
    v.row_stride = a.strides(0);
    v.data = static_cast<const uint8_t*>(a.data());
    return v;
}

py::array run_preprocess(const py::sequence& images, int64_t out_h, int64_t out_w, int64_t short_side,
                         const std::string& layout, const std::string& dtype, const py::object& lut,
                         int threads) {
    if (layout != "nhwc" && layout != "nchw") {
        throw py::value_error("layout: expected 'nhwc' or 'nchw', got '" + layout + "'");
    }
    if (dtype != "float32" && dtype != "uint8") {
        throw py::value_error("dtype: expected 'float32' or 'uint8', got '" + dtype + "'");
    }
    if (out_h < 1 || out_w < 1 || out_h > 2147483647 || out_w > 2147483647) {
        throw py::value_error("size: must be in 1x1..(2^31-1)x(2^31-1), got " + std::to_string(out_h) + "x" +
                              std::to_string(out_w));
    }
    if (short_side < 1 || short_side > 2147483647) {
        throw py::value_error("short_side: must be in 1..2^31-1, got " + std::to_string(short_side));
    }
    if (threads < 0) throw py::value_error("threads: must be >= 0, got " + std::to_string(threads));
    const size_t n = py::len(images);
    if (n == 0) throw py::value_error("images: empty batch");
    std::vector<py::object> keep;  // references held while the GIL is released
    std::vector<instab::kernels::ImageView> views;
    keep.reserve(n);
    views.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        py::object item = images[i];
        views.push_back(image_view(item, i));
        keep.push_back(std::move(item));
    }
    instab::kernels::PreprocessParams prm;
    prm.out_h = out_h;
    prm.out_w = out_w;
    prm.short_side = short_side;
    prm.nchw = layout == "nchw";
    const auto nn = static_cast<py::ssize_t>(n);
    std::vector<py::ssize_t> shape = prm.nchw ? std::vector<py::ssize_t>{nn, 3, out_h, out_w}
                                              : std::vector<py::ssize_t>{nn, out_h, out_w, 3};
    if (dtype == "uint8") {
        if (!lut.is_none()) throw py::value_error("lut: must be None for uint8 output");
        py::array_t<uint8_t> out(shape);
        uint8_t* po = out.mutable_data();
        py::gil_scoped_release release;
        instab::kernels::preprocess_u8(views.data(), nn, prm, po, threads);
        return std::move(out);
    }
    if (lut.is_none() || !py::isinstance<py::array>(lut)) {
        throw py::type_error("lut: float32 output needs a float32 [3, 256] lookup table");
    }
    auto table = py::reinterpret_borrow<py::array>(lut);
    if (!is_dtype<float>(table)) throw py::type_error("lut: expected float32, got " + dtype_str(table));
    require_ndim(table, "lut", 2);
    require_c_contiguous(table, "lut");
    if (table.shape(0) != 3 || table.shape(1) != 256) {
        throw py::value_error("lut: expected shape (3, 256), got " + shape_str(table));
    }
    prm.lut = static_cast<const float*>(table.data());
    py::array_t<float> out(shape);
    float* po = out.mutable_data();
    py::gil_scoped_release release;
    instab::kernels::preprocess_f32(views.data(), nn, prm, po, threads);
    return std::move(out);
}

py::tuple run_plan(int64_t height, int64_t width, int64_t short_side, int64_t out_h, int64_t out_w) {
    if (height < 1 || width < 1) throw py::value_error("height/width: must be >= 1");
    if (short_side < 1 || short_side > 2147483647) throw py::value_error("short_side: must be in 1..2^31-1");
    if (out_h < 1 || out_w < 1) throw py::value_error("out_h/out_w: must be >= 1");
    auto p = instab::kernels::plan_resize(height, width, short_side, out_h, out_w);
    return py::make_tuple(p.resized_h, p.resized_w, p.top, p.left);
}

}  // namespace

void register_preprocess(py::module_& m) {
    m.def("preprocess", &run_preprocess, py::arg("images"), py::arg("out_h"), py::arg("out_w"),
          py::arg("short_side"), py::arg("layout"), py::arg("dtype"), py::arg("lut"), py::arg("threads") = 0,
          "Resize (Pillow-exact bilinear), centre crop and scale a list of uint8 images into one batch "
          "(see instab.preprocess).");
    m.def("preprocess_plan", &run_plan, py::arg("height"), py::arg("width"), py::arg("short_side"),
          py::arg("out_h"), py::arg("out_w"),
          "(resized_h, resized_w, top, left) that preprocess uses for one image.");
}
