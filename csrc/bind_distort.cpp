// Bindings for the fused distortion chain and the Philox generator.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bind_util.hpp"
#include "distort.hpp"

namespace py = pybind11;
using namespace instab::bind;
using instab::kernels::DistortKind;
using instab::kernels::DistortOp;

namespace {

std::vector<DistortOp> make_ops(const py::array& kinds, const py::array& seeds, const py::array& lo,
                                const py::array& hi) {
    require_ndim(kinds, "kinds", 1);
    require_ndim(seeds, "seeds", 1);
    require_ndim(lo, "lo", 2);
    require_ndim(hi, "hi", 2);
    if (!is_dtype<int32_t>(kinds)) throw py::type_error("kinds: expected int32, got " + dtype_str(kinds));
    if (!is_dtype<uint64_t>(seeds)) throw py::type_error("seeds: expected uint64, got " + dtype_str(seeds));
    if (!is_dtype<double>(lo)) throw py::type_error("lo: expected float64, got " + dtype_str(lo));
    if (!is_dtype<double>(hi)) throw py::type_error("hi: expected float64, got " + dtype_str(hi));
    const py::ssize_t n_ops = kinds.shape(0);
    if (n_ops > instab::kernels::kMaxDistortOps) {
        throw py::value_error("kinds: at most " + std::to_string(instab::kernels::kMaxDistortOps) +
                              " operations, got " + std::to_string(n_ops));
    }
    if (seeds.shape(0) != n_ops) throw py::value_error("seeds: expected one per operation, shape " + shape_str(seeds));
    for (const auto* arr : {&lo, &hi}) {
        if (arr->shape(0) != n_ops || arr->shape(1) != instab::kernels::kDistortParams) {
            throw py::value_error(std::string(arr == &lo ? "lo" : "hi") + ": expected shape (" +
                                  std::to_string(n_ops) + ", 2), got " + shape_str(*arr));
        }
    }
    auto k = kinds.unchecked<int32_t, 1>();
    auto s = seeds.unchecked<uint64_t, 1>();
    auto l = lo.unchecked<double, 2>();
    auto h = hi.unchecked<double, 2>();
    std::vector<DistortOp> ops(static_cast<size_t>(n_ops));
    for (py::ssize_t j = 0; j < n_ops; ++j) {
        if (k(j) < 0 || k(j) > static_cast<int32_t>(DistortKind::Poisson)) {
            throw py::value_error("kinds[" + std::to_string(j) + "]: unknown operation code " + std::to_string(k(j)));
        }
        ops[j].kind = static_cast<DistortKind>(k(j));
        ops[j].seed = s(j);
        for (int p = 0; p < instab::kernels::kDistortParams; ++p) {
            ops[j].lo[p] = l(j, p);
            ops[j].hi[p] = h(j, p);
        }
    }
    return ops;
}

template <class In, class Out>
py::tuple run_typed(const py::array& images, const std::vector<DistortOp>& ops, uint64_t first_index,
                    int threads) {
    const int64_t n = images.shape(0), hh = images.shape(1), ww = images.shape(2), c = images.shape(3);
    const int n_ops = static_cast<int>(ops.size());
    py::array_t<Out> out({n, hh, ww, c});
    py::array_t<double> params({n, static_cast<int64_t>(n_ops), static_cast<int64_t>(instab::kernels::kDistortParams)});
    const In* pin = static_cast<const In*>(images.data());
    Out* pout = out.mutable_data();
    double* pp = params.mutable_data();
    {
        py::gil_scoped_release release;
        instab::kernels::distort_chain<In, Out>(pin, pout, n, hh, ww, c, ops.data(), n_ops, first_index, threads, pp);
    }
    return py::make_tuple(out, params);
}

py::tuple run_chain(const py::array& images, const py::array& kinds, const py::array& seeds, const py::array& lo,
                    const py::array& hi, uint64_t first_index, const std::string& out_dtype, int threads) {
    require_ndim(images, "images", 4);
    require_c_contiguous(images, "images");
    const py::ssize_t c = images.shape(3);
    if (c != 1 && c != 3 && c != 4) {
        throw py::value_error("images: expected 1, 3 or 4 channels (last axis), got shape " + shape_str(images));
    }
    const std::vector<DistortOp> ops = make_ops(kinds, seeds, lo, hi);
    const bool in_u8 = is_dtype<uint8_t>(images);
    if (!in_u8 && !is_dtype<float>(images)) {
        throw py::type_error("images: expected uint8 or float32, got " + dtype_str(images));
    }
    if (out_dtype != "uint8" && out_dtype != "float32") {
        throw py::value_error("out_dtype: expected 'uint8' or 'float32', got '" + out_dtype + "'");
    }
    const bool out_u8 = out_dtype == "uint8";
    try {
        if (in_u8 && out_u8) return run_typed<uint8_t, uint8_t>(images, ops, first_index, threads);
        if (in_u8) return run_typed<uint8_t, float>(images, ops, first_index, threads);
        if (out_u8) return run_typed<float, uint8_t>(images, ops, first_index, threads);
        return run_typed<float, float>(images, ops, first_index, threads);
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
}

py::array_t<uint64_t> as_u64(const py::array& a, const char* name) {
    require_ndim(a, name, 1);
    if (!is_dtype<uint64_t>(a)) throw py::type_error(std::string(name) + ": expected uint64, got " + dtype_str(a));
    return py::array_t<uint64_t, py::array::c_style>::ensure(a);
}

template <class T, int W>
py::array_t<T> run_philox(uint64_t seed, const py::array& streams, const py::array& counters) {
    auto s = as_u64(streams, "streams");
    auto c = as_u64(counters, "counters");
    if (s.shape(0) != c.shape(0)) {
        throw py::value_error("counters: expected the same length as streams (" + std::to_string(s.shape(0)) +
                              "), got " + std::to_string(c.shape(0)));
    }
    const int64_t m = s.shape(0);
    py::array_t<T> out({m, static_cast<int64_t>(W)});
    const uint64_t* ps = s.data();
    const uint64_t* pc = c.data();
    T* po = out.mutable_data();
    {
        py::gil_scoped_release release;
        if constexpr (W == 4) {
            instab::kernels::philox_blocks(seed, ps, pc, m, po);
        } else {
            instab::kernels::philox_uniform2(seed, ps, pc, m, po);
        }
    }
    return out;
}

}  // namespace

void register_distort(py::module_& m) {
    m.def("distort_chain", &run_chain, py::arg("images"), py::arg("kinds"), py::arg("seeds"), py::arg("lo"),
          py::arg("hi"), py::arg("first_index"), py::arg("out_dtype"), py::arg("threads"),
          "Fused distortion chain over an NHWC batch; returns (images, drawn params [n, ops, 2]).");
    m.def(
        "philox4x32",
        [](uint64_t seed, const py::array& streams, const py::array& counters) {
            return run_philox<uint32_t, 4>(seed, streams, counters);
        },
        py::arg("seed"), py::arg("streams"), py::arg("counters"),
        "Raw Philox4x32-10 output words [m, 4] for each (stream, counter) pair.");
    m.def(
        "philox_uniform",
        [](uint64_t seed, const py::array& streams, const py::array& counters) {
            return run_philox<double, 2>(seed, streams, counters);
        },
        py::arg("seed"), py::arg("streams"), py::arg("counters"),
        "CounterRng(seed, stream).uniform2(counter) for each pair: float64 [m, 2] in (0, 1).");
}
