// Bindings for the instability kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bind_util.hpp"
#include "instability.hpp"

namespace py = pybind11;
using namespace instab::bind;

namespace {

// Labels are class indices in [0, n_classes) or -1 (padding); n_classes < 0
// leaves the upper end open (ranked input without a class count).
void check_labels(const py::array& labels, int64_t n_classes) {
    const auto* lab = static_cast<const int32_t*>(labels.data());
    const int64_t rows = labels.shape(0), width = labels.shape(1);
    const int64_t upper = n_classes >= 0 ? n_classes : INT64_MAX;
    for (int64_t i = 0; i < rows; ++i) {
        for (int64_t l = 0; l < width; ++l) {
            const int64_t v = lab[i * width + l];
            if (v >= -1 && v < upper) continue;
            throw py::value_error("labels: class index " + std::to_string(v) + " for image " + std::to_string(i) +
                                  " is out of range (expected -1 for padding or 0.." +
                                  (n_classes >= 0 ? std::to_string(n_classes - 1) : std::string("n_classes-1")) +
                                  ")");
        }
    }
}

py::dict run_instability(const py::array& predictions, const py::array& labels, int64_t k,
                         int64_t n_classes, int threads) {
    require_ndim(predictions, "predictions", 3);
    require_c_contiguous(predictions, "predictions");
    require_ndim(labels, "labels", 2);
    require_c_contiguous(labels, "labels");
    if (!is_dtype<int32_t>(labels)) throw py::type_error("labels: expected int32, got " + dtype_str(labels));
    const int64_t n = predictions.shape(0), e = predictions.shape(1), m = predictions.shape(2);
    if (labels.shape(0) != n) {
        throw py::value_error("labels: has " + std::to_string(labels.shape(0)) + " rows but predictions has " +
                              std::to_string(n) + " images");
    }
    if (k < 1 || k > m) {
        throw py::value_error("k: must be in 1.." + std::to_string(m) + ", got " + std::to_string(k));
    }
    const bool is_scores = is_dtype<float>(predictions) || is_dtype<double>(predictions);
    const bool is_ranked =
        is_dtype<int16_t>(predictions) || is_dtype<int32_t>(predictions) || is_dtype<int64_t>(predictions);
    if (!is_scores && !is_ranked) {
        throw py::type_error("predictions: expected int16/int32/int64 class indices or float32/float64 scores, got " +
                             dtype_str(predictions));
    }
    if (is_scores && n_classes >= 0 && n_classes != m) {
        throw py::value_error("n_classes: the scores have " + std::to_string(m) +
                              " classes (their last axis), got " + std::to_string(n_classes));
    }
    // The scores kernel reads row[label]: every label must index a column.
    check_labels(labels, is_scores ? m : n_classes);
    py::array_t<uint8_t> correct({n, e}), observed({n, e}), unstable({n}), counted({n});
    // Confidence exists only for scores; do not pay for a [n, e] float array otherwise.
    py::array_t<float> confidence(is_scores ? std::vector<py::ssize_t>{n, e} : std::vector<py::ssize_t>{0});
    instab::kernels::InstabilityOutputs out;
    out.correct = correct.mutable_data();
    out.observed = observed.mutable_data();
    out.unstable = unstable.mutable_data();
    out.counted = counted.mutable_data();
    out.confidence = is_scores ? confidence.mutable_data() : nullptr;
    instab::kernels::LabelSets sets{static_cast<const int32_t*>(labels.data()), labels.shape(1)};
    {
        py::gil_scoped_release release;
        using namespace instab::kernels;
        if (is_dtype<float>(predictions)) {
            instability_scores(static_cast<const float*>(predictions.data()), n, e, m, k, sets, out, threads);
        } else if (is_dtype<double>(predictions)) {
            instability_scores(static_cast<const double*>(predictions.data()), n, e, m, k, sets, out, threads);
        } else if (is_dtype<int16_t>(predictions)) {
            instability_ranked(static_cast<const int16_t*>(predictions.data()), n, e, m, k, n_classes, sets, out,
                               threads);
        } else if (is_dtype<int32_t>(predictions)) {
            instability_ranked(static_cast<const int32_t*>(predictions.data()), n, e, m, k, n_classes, sets, out,
                               threads);
        } else {
            instability_ranked(static_cast<const int64_t*>(predictions.data()), n, e, m, k, n_classes, sets, out,
                               threads);
        }
    }
    py::dict d;
    d["correct"] = correct;
    d["observed"] = observed;
    d["unstable"] = unstable;
    d["counted"] = counted;
    d["confidence"] = is_scores ? py::object(confidence) : py::object(py::none());
    d["env_correct"] = py::array_t<int64_t>(e, out.env_correct.data());
    d["env_observed"] = py::array_t<int64_t>(e, out.env_observed.data());
    d["n_counted"] = out.n_counted;
    d["n_unstable"] = out.n_unstable;
    d["n_always_correct"] = out.n_always_correct;
    d["n_always_wrong"] = out.n_always_wrong;
    return d;
}

}  // namespace

void register_instability(py::module_& m) {
    m.def("instability", &run_instability, py::arg("predictions"), py::arg("labels"), py::arg("k"),
          py::arg("n_classes"), py::arg("threads"),
          "Per-observation correctness and per-image instability in one pass (see instab.metrics).");
}
