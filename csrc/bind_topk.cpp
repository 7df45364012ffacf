// Bindings for the top-k kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bind_util.hpp"
#include "topk.hpp"

namespace py = pybind11;
using namespace instab::bind;

namespace {

template <class T>
py::tuple run_topk_typed(const py::array& scores, int64_t k, int threads) {
    const int64_t rows = scores.shape(0), c = scores.shape(1);
    py::array_t<int64_t> idx({rows, k});
    py::array_t<T> val({rows, k});
    int64_t* pi = idx.mutable_data();
    T* pv = val.mutable_data();
    const T* ps = static_cast<const T*>(scores.data());
    {
        py::gil_scoped_release release;
        instab::kernels::topk(ps, rows, c, k, pi, pv, threads);
    }
    return py::make_tuple(idx, val);
}

py::tuple run_topk(const py::array& scores, int64_t k, int threads) {
    require_ndim(scores, "scores", 2);
    require_c_contiguous(scores, "scores");
    if (k < 1 || k > scores.shape(1)) {
        throw py::value_error("k: must be in 1.." + std::to_string(scores.shape(1)) + ", got " +
                              std::to_string(k));
    }
    if (is_dtype<float>(scores)) return run_topk_typed<float>(scores, k, threads);
    if (is_dtype<double>(scores)) return run_topk_typed<double>(scores, k, threads);
    throw py::type_error("scores: expected float32 or float64, got " + dtype_str(scores));
}

}  // namespace

void register_topk(py::module_& m) {
    m.def("topk", &run_topk, py::arg("scores"), py::arg("k"), py::arg("threads") = 0,
          "Top-k class indices and scores per row of a [rows, classes] array, best first.");
}
