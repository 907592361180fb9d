// ModelArgs: literals of generated code explained as expressions of config fields; see
// model_args.h for the method.
#include "torch2mlx/model_args.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "torch2mlx/error.h"

namespace torch2mlx {

namespace {

// The exponents a field may carry in a literal: sizes multiply and divide (heads * head_dim,
// hidden // heads), an attention scale is a size to the power -1/2.
constexpr std::array<double, 6> kExponents{-2, -1, -0.5, 0.5, 1, 2};

bool is_number(const py::Expr& part) {
  return part.kind() == py::Expr::Kind::Int || part.kind() == py::Expr::Kind::Float;
}

// A numeric literal of the code, in walk order.
struct Slot {
  double value = 0;
  bool integer = true;
};

std::vector<Slot> slots_of(const std::vector<py::Stmt>& code) {
  std::vector<Slot> slots;
  py::walk(code, [&](const py::Expr& part) {
    if (part.kind() == py::Expr::Kind::Int) {
      slots.push_back({static_cast<double>(part.integer()), true});
    } else if (part.kind() == py::Expr::Kind::Float) {
      slots.push_back({std::stod(part.text()), false});
    }
  });
  return slots;
}

// Statements without their comments, for comparing structure.
std::vector<py::Stmt> without_comments(std::vector<py::Stmt> code) {
  std::erase_if(code, [](const py::Stmt& s) { return s.kind == py::Stmt::Kind::Comment; });
  for (py::Stmt& statement : code) {
    statement.comment.clear();
    statement.body = without_comments(std::move(statement.body));
    statement.orelse = without_comments(std::move(statement.orelse));
  }
  return code;
}

// The code printed with every number masked: equal for two captures of one architecture.
std::string shape_of(const std::vector<py::Stmt>& code) {
  const py::Expr mask = py::name("_number_");
  return py::print(py::rewrite(without_comments(code), [&](const py::Expr& part) {
    return is_number(part) ? std::optional(mask) : std::nullopt;
  }));
}

// A literal as c * prod(field ^ exponent).
struct Fit {
  std::map<std::size_t, double> exponents;  // by field index; only non-zero ones
  double coefficient = 1;
};

// The field values of one capture: the model's, with at most one field changed.
using Point = std::vector<double>;

// Python's value of the expression `fit` prints as (expression_of), at `point`: integer
// arithmetic for an integer literal (products, then one floor division), floating point
// otherwise, with the floor division of a square root's ratio.
std::optional<double> evaluate(const Fit& fit, const Point& point, bool integer, bool whole) {
  if (integer && whole) {
    std::int64_t numerator = std::llround(fit.coefficient >= 1 ? fit.coefficient : 1);
    std::int64_t denominator = std::llround(fit.coefficient >= 1 ? 1 : 1 / fit.coefficient);
    for (const auto& [field, exponent] : fit.exponents) {
      const auto value = std::llround(point[field]);
      for (int k = 0; k < static_cast<int>(std::abs(exponent)); ++k) {
        (exponent > 0 ? numerator : denominator) *= value;
      }
    }
    if (denominator == 0) return std::nullopt;
    const std::int64_t quotient = numerator / denominator;  // Python's // on positive sizes
    return static_cast<double>(quotient);
  }
  const bool halves = std::abs(fit.exponents.begin()->second) == 0.5;
  if (halves) {  // (base // divisor) ** ±0.5, as expression_of prints it
    const bool negative = std::any_of(fit.exponents.begin(), fit.exponents.end(),
                                      [](const auto& entry) { return entry.second < 0; });
    double base = 1;
    std::optional<double> divisor;
    for (const auto& [field, exponent] : fit.exponents) {
      if ((exponent < 0) == negative) {
        base *= point[field];
      } else {
        divisor = divisor.value_or(1) * point[field];
      }
    }
    const double ratio = divisor ? std::floor(base / *divisor) : base;
    return std::pow(ratio, negative ? -0.5 : 0.5);
  }
  double result = fit.coefficient;
  for (const auto& [field, exponent] : fit.exponents) result *= std::pow(point[field], exponent);
  return integer ? std::trunc(result) : result;  // int(...) of a product with a float field
}

// Whether every field of the fit is an integer, so that integer arithmetic computes it.
bool whole_fields(const Fit& fit, const std::vector<ConfigField>& fields) {
  return std::all_of(fit.exponents.begin(), fit.exponents.end(),
                     [&](const auto& entry) { return fields[entry.first].integer; });
}

bool close(double a, double b) { return std::abs(a - b) <= 1e-12 * std::max(std::abs(a), 1e-300); }

// What a probe is compared with: the model, or the probe of its base.
struct Reference {
  double value;  // the literal there
  const Point* point;
};

// The literal `slot` fitted over the probes that move it (each against its reference), or
// nothing.
std::optional<Fit> fit_slot(const Slot& slot, const std::vector<Slot>& at_probe,
                            const std::vector<std::size_t>& probe_field, const Point& model,
                            const std::vector<Point>& points,
                            const std::vector<Reference>& references,
                            const std::vector<ConfigField>& fields) {
  Fit fit;
  for (std::size_t probe = 0; probe < at_probe.size(); ++probe) {
    const double moved = at_probe[probe].value;
    const double before = references[probe].value;
    if (moved == before) continue;
    if (before == 0 || moved == 0 || (moved > 0) != (before > 0)) return std::nullopt;
    const std::size_t field = probe_field[probe];
    const double exponent = std::log(moved / before) /
                            std::log(points[probe][field] / (*references[probe].point)[field]);
    const auto nearest = std::min_element(
        kExponents.begin(), kExponents.end(),
        [&](double a, double b) { return std::abs(a - exponent) < std::abs(b - exponent); });
    if (std::abs(*nearest - exponent) > 1e-6) return std::nullopt;
    fit.exponents[field] = *nearest;
  }
  if (fit.exponents.empty()) return fit;
  const bool halves = std::any_of(fit.exponents.begin(), fit.exponents.end(),
                                  [](const auto& entry) { return std::abs(entry.second) == 0.5; });
  const bool wholes = std::any_of(fit.exponents.begin(), fit.exponents.end(),
                                  [](const auto& entry) { return std::abs(entry.second) != 0.5; });
  if (halves && (wholes || slot.integer)) return std::nullopt;  // printed as one ** 0.5 below
  double product = 1;
  for (const auto& [field, exponent] : fit.exponents) product *= std::pow(model[field], exponent);
  fit.coefficient = slot.value / product;
  // A coefficient the code can write: 1, an integer factor or an integer divisor.
  const double whole = std::round(fit.coefficient);
  const double divisor = std::round(1 / fit.coefficient);
  if (whole >= 1 && close(fit.coefficient, whole)) {
    fit.coefficient = whole;
  } else if (divisor >= 2 && close(1 / fit.coefficient, divisor)) {
    fit.coefficient = 1 / divisor;
  } else {
    return std::nullopt;
  }
  if (halves && fit.coefficient != 1) return std::nullopt;
  // The expression must give the literal at the model and at every probe.
  std::vector<const Point*> all{&model};
  for (const Point& point : points) all.push_back(&point);
  for (std::size_t index = 0; index < all.size(); ++index) {
    const double expected = index == 0 ? slot.value : at_probe[index - 1].value;
    const auto value = evaluate(fit, *all[index], slot.integer, whole_fields(fit, fields));
    if (!value || !close(*value, expected)) return std::nullopt;
  }
  return fit;
}

// The product of `factors` (field references), or nothing when there are none.
std::optional<py::Expr> product(const std::vector<py::Expr>& factors) {
  if (factors.empty()) return std::nullopt;
  py::Expr result = factors[0];
  for (std::size_t index = 1; index < factors.size(); ++index) result = result * factors[index];
  return result;
}

// The expression a fit prints as, reading fields through `args` (`args` or `self.args`).
py::Expr expression_of(const Fit& fit, const std::vector<ConfigField>& fields, const py::Expr& args,
                       bool integer) {
  std::vector<py::Expr> over, under;
  if (fit.coefficient > 1) over.push_back(py::integer(std::llround(fit.coefficient)));
  if (fit.coefficient < 1) under.push_back(py::integer(std::llround(1 / fit.coefficient)));
  for (const auto& [field, exponent] : fit.exponents) {
    const py::Expr reference = args.attr(fields[field].name);
    const int times = std::abs(exponent) == 0.5 ? 1 : static_cast<int>(std::abs(exponent));
    for (int k = 0; k < times; ++k) (exponent > 0 ? over : under).push_back(reference);
  }
  const bool halves = std::abs(fit.exponents.begin()->second) == 0.5;
  // A square root of a ratio is an attention scale: (hidden // heads) ** -0.5 when the
  // ratio is whole, as torch computes it from an integer head size.
  if (halves) {
    const bool negative = std::any_of(fit.exponents.begin(), fit.exponents.end(),
                                      [](const auto& entry) { return entry.second < 0; });
    std::vector<py::Expr>& base = negative ? under : over;
    std::vector<py::Expr>& divide = negative ? over : under;
    py::Expr ratio = *product(base);
    if (const auto divisor = product(divide)) ratio = py::binary(ratio, py::Op::FloorDiv, *divisor);
    return py::binary(ratio, py::Op::Pow, py::number(negative ? -0.5 : 0.5));
  }
  // An integer from a float field (`dim * mlp_ratio`) is int() of the product, as torch's
  // modules compute it.
  const bool whole = whole_fields(fit, fields);
  const std::optional<py::Expr> top = product(over);
  const std::optional<py::Expr> bottom = product(under);
  py::Expr result = top.value_or(py::integer(1));
  if (bottom) {
    result = py::binary(result, integer && whole ? py::Op::FloorDiv : py::Op::Div, *bottom);
  }
  return integer && !whole ? py::call("int", {result}) : result;
}

// Calls of the named classes in `code` with `args` as their first argument.
std::vector<py::Stmt> pass_args(std::vector<py::Stmt> code, const std::set<std::string>& takers) {
  return py::rewrite(std::move(code), [&](const py::Expr& part) -> std::optional<py::Expr> {
    if (part.kind() != py::Expr::Kind::Call) return std::nullopt;
    const py::Expr& callee = part.parts()[0];
    if (callee.kind() != py::Expr::Kind::Name || !takers.contains(callee.text())) {
      return std::nullopt;
    }
    auto [positional, keywords] = py::arguments(part);
    positional.insert(positional.begin(), py::name("args"));
    return callee(std::move(positional), std::move(keywords));
  });
}

bool reads_name(const std::vector<py::Stmt>& code, std::string_view name) {
  bool found = false;
  py::walk(code, [&](const py::Expr& part) {
    found = found || (part.kind() == py::Expr::Kind::Name && part.text() == name);
  });
  return found;
}

}  // namespace

ParameterizedCode parameterize(std::vector<py::Stmt> classes,
                               const std::vector<ConfigField>& fields,
                               const std::vector<std::string>& probe_fields,
                               const std::vector<double>& probe_values,
                               const std::vector<std::vector<py::Stmt>>& probes,
                               const std::vector<ProbeBase>& bases) {
  ParameterizedCode result;
  const std::vector<Slot> slots = slots_of(classes);
  const std::string shape = shape_of(classes);
  Point model;
  std::map<std::string, std::size_t> field_index;
  for (const ConfigField& field : fields) {
    field_index[field.name] = model.size();
    model.push_back(field.value);
  }
  // The usable probes: one changed field each (beside their base's), and the same code but
  // for its numbers. A probe with a base is compared with the usable probe of that base.
  std::vector<std::size_t> probe_field;
  std::vector<Point> points;
  std::vector<std::vector<Slot>> probe_slots;
  std::vector<std::optional<std::size_t>> probe_base;  // index among the usable probes
  std::set<std::size_t> fixed;
  std::map<ProbeBase, std::size_t> base_probes;  // usable single-change probes, by their change
  const auto index_of = [&](const std::string& name) {
    const auto found = field_index.find(name);
    if (found == field_index.end()) {
      fail("model_args", fmt::format("a probe changes '{}', which is not a config field", name));
    }
    return found->second;
  };
  for (std::size_t probe = 0; probe < probes.size(); ++probe) {
    const std::size_t field = index_of(probe_fields[probe]);
    const ProbeBase base = probe < bases.size() ? bases[probe] : ProbeBase{};
    std::optional<std::size_t> reference;
    if (!base.empty()) {
      const auto found = base_probes.find(base);
      if (found == base_probes.end()) {
        result.notes.push_back(fmt::format(
            "ModelArgs: '{}' stays fixed: its probe was captured on a copy of the model's first "
            "layers, whose own code differs from the model's",
            probe_fields[probe]));
        fixed.insert(field);
        continue;
      }
      reference = found->second;
    }
    if (shape_of(probes[probe]) != shape) {
      result.notes.push_back(
          fmt::format("ModelArgs: '{}' stays fixed: changing it changes the structure of the code",
                      probe_fields[probe]));
      fixed.insert(field);
      continue;
    }
    Point point = model;
    for (const auto& [name, value] : base) point[index_of(name)] = value;
    point[field] = probe_values[probe];
    if (base.empty())
      base_probes.emplace(ProbeBase{{probe_fields[probe], probe_values[probe]}}, points.size());
    probe_field.push_back(field);
    points.push_back(std::move(point));
    probe_slots.push_back(slots_of(probes[probe]));
    probe_base.push_back(reference);
  }
  // Fit every literal over the probes of fields not fixed; a literal no expression explains
  // fixes the fields that move it, and the fit starts again without them.
  std::vector<std::optional<Fit>> fits;
  for (bool settled = false; !settled;) {
    settled = true;
    fits.assign(slots.size(), std::nullopt);
    std::vector<std::size_t> active;
    for (std::size_t probe = 0; probe < points.size(); ++probe) {
      if (!fixed.contains(probe_field[probe])) active.push_back(probe);
    }
    for (std::size_t slot = 0; slot < slots.size() && settled; ++slot) {
      std::vector<Slot> at_probe;
      std::vector<std::size_t> fields_of;
      std::vector<Point> active_points;
      std::vector<Reference> references;
      for (const std::size_t probe : active) {
        at_probe.push_back(probe_slots[probe][slot]);
        fields_of.push_back(probe_field[probe]);
        active_points.push_back(points[probe]);
        const auto base = probe_base[probe];
        references.push_back(base ? Reference{probe_slots[*base][slot].value, &points[*base]}
                                  : Reference{slots[slot].value, &model});
      }
      fits[slot] =
          fit_slot(slots[slot], at_probe, fields_of, model, active_points, references, fields);
      if (fits[slot]) continue;
      std::vector<std::string> names;
      for (std::size_t k = 0; k < at_probe.size(); ++k) {
        if (at_probe[k].value != references[k].value && fixed.insert(fields_of[k]).second) {
          names.push_back(fields[fields_of[k]].name);
        }
      }
      result.notes.push_back(fmt::format(
          "ModelArgs: {} stay(s) fixed: a number of model.py ({} here) moves with them in a way "
          "no product of config fields explains",
          fmt::join(names, ", "), slots[slot].value));
      settled = false;
    }
  }
  // The fields some literal reads, in the config's order.
  std::set<std::size_t> used;
  for (const auto& fit : fits) {
    if (!fit) continue;
    for (const auto& [field, exponent] : fit->exponents) used.insert(field);
  }
  if (used.empty()) {
    result.classes = std::move(classes);
    return result;
  }
  for (const std::size_t field : used) result.fields.push_back(fields[field]);
  // Literals to expressions, in walk order: `args.f`, where `__call__` (or another method)
  // starts with `args = self.args` (`self.args.f` if the method has a local named args).
  // A number in a signature (a default) stays: `self` is not there to read.
  std::set<std::string> takers;
  std::size_t next = 0;
  for (py::Stmt& definition : classes) {
    bool calls = false;  // a method other than __init__ reads the args
    for (py::Stmt& method : definition.body) {
      const bool init = method.text == "__init__";
      const bool named = std::any_of(method.params.begin(), method.params.end(),
                                     [](const py::Param& p) { return p.name == "args"; }) ||
                         reads_name(method.body, "args");
      const py::Expr args = init || !named ? py::name("args") : py::name("self").attr("args");
      for (const py::Expr& expression : py::expressions(method)) {
        py::walk(expression, [&](const py::Expr& part) { next += is_number(part) ? 1 : 0; });
      }
      bool read = false;
      method.body =
          py::rewrite(std::move(method.body), [&](const py::Expr& part) -> std::optional<py::Expr> {
            if (!is_number(part)) return std::nullopt;
            const std::size_t slot = next++;
            if (!fits[slot] || fits[slot]->exponents.empty()) return std::nullopt;
            read = true;
            return expression_of(*fits[slot], fields, args, slots[slot].integer);
          });
      if (!read || init) continue;
      calls = true;
      if (!named) {
        method.body.insert(method.body.begin(),
                           py::assign(py::name("args"), py::name("self").attr("args")));
      }
    }
    // Who takes `args`: a class whose code reads them, or builds a class that does.
    definition.body = pass_args(std::move(definition.body), takers);
    const bool is_root = &definition == &classes.back();
    if (!is_root && !calls && !reads_name(definition.body, "args")) continue;
    takers.insert(definition.text);
    for (py::Stmt& method : definition.body) {
      if (method.kind != py::Stmt::Kind::Function || method.text != "__init__") continue;
      std::optional<py::Expr> annotation;
      if (is_root) annotation = py::name("ModelArgs");
      method.params.insert(method.params.begin() + 1, {"args", std::nullopt, annotation});
      if (calls || is_root) {  // the root keeps them, as an mlx-lm model does
        method.body.insert(method.body.begin() + 1,
                           py::assign(py::name("self").attr("args"), py::name("args")));
      }
    }
  }
  // The dataclass, first.
  std::vector<py::Stmt> members;
  for (const ConfigField& field : result.fields) {
    members.push_back(
        py::annotated(py::name(field.name), py::name(field.integer ? "int" : "float")));
  }
  py::Stmt dataclass = py::commented(
      py::decorated(py::class_("ModelArgs", {}, std::move(members)), py::name("dataclass")),
      "The config fields the model's sizes come from (config.json's \"model_args\").");
  classes.insert(classes.begin(), std::move(dataclass));
  result.classes = std::move(classes);
  return result;
}

}  // namespace torch2mlx
