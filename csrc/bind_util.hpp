// Shared argument checks for the pybind11 bindings. Kernels never see Python
// objects; everything is validated here, with messages that name the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

namespace instab::bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        s += std::to_string(a.shape(i));
        if (i + 1 < a.ndim() || a.ndim() == 1) s += ",";
        if (i + 1 < a.ndim()) s += " ";
    }
    return s + ")";
}

inline void require_ndim(const py::array& a, const char* name, py::ssize_t ndim) {
    if (a.ndim() != ndim) {
        throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) +
                              "-D array, got shape " + shape_str(a));
    }
}

inline void require_c_contiguous(const py::array& a, const char* name) {
    if (!(a.flags() & py::array::c_style)) {
        throw py::value_error(std::string(name) + ": array must be C-contiguous");
    }
}

template <class T>
bool is_dtype(const py::array& a) {
    // By type number, not object identity: an unpickled array (Ray, multiprocessing) can carry its own
    // descriptor object for uint8. Native byte order only ('=' or '|'): the kernels read raw memory.
    const py::dtype d = a.dtype();
    const char order = d.byteorder();
    return d.normalized_num() == py::dtype::of<T>().normalized_num() && (order == '=' || order == '|');
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

}  // namespace instab::bind
