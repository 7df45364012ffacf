// The instab._core extension: one register_<area> call per kernel area.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_instability(py::module_& m);
void register_topk(py::module_& m);
void register_distort(py::module_& m);
void register_isp(py::module_& m);
void register_demosaic(py::module_& m);
void register_sharpen(py::module_& m);
void register_preprocess(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "instab's C++ kernels; use the public instab modules instead of importing this directly.";
    register_instability(m);
    register_topk(m);
    register_distort(m);
    register_isp(m);
    register_demosaic(m);
    register_sharpen(m);
    register_preprocess(m);
}
