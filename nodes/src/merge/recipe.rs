//! What to merge: the method, the models with their weights, the base, the output type.
//!
//! One [`Recipe`] serves the node and `peirce merge` alike, and so does its checking: the
//! node's `validate` runs [`check_names`] on the workflow's input names before anything
//! executes, and [`Recipe::new`] repeats it on the paths that arrive. Models are always
//! taken in input-name order (weights are given by name, so there is no other order), which
//! fixes the order of the floating-point sums: a node and the command give the same bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::kernel::{Combine, FloatType, FLOAT_TYPE_NAMES};
use super::MergeError;

/// The input name of the base model of task arithmetic.
pub const BASE: &str = "base";

/// A merge method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `sum(w_i x_i) / sum(w_i)`: mergekit's `linear` (normalized).
    Linear,
    /// `sum(w_i x_i)`.
    Sum,
    /// `base + sum(w_i (x_i - base))`.
    TaskArithmetic,
}

/// The method names, for messages.
pub const METHOD_NAMES: &str = "\"linear\", \"sum\" or \"task_arithmetic\"";

impl Method {
    /// `linear`, `sum` or `task_arithmetic`.
    pub fn parse(name: &str) -> Result<Self, MergeError> {
        match name {
            "linear" => Ok(Method::Linear),
            "sum" => Ok(Method::Sum),
            "task_arithmetic" => Ok(Method::TaskArithmetic),
            _ => Err(MergeError::Recipe(format!(
                "Unknown merge method `{name}` (known: {METHOD_NAMES})"
            ))),
        }
    }

    /// The name [`Method::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Method::Linear => "linear",
            Method::Sum => "sum",
            Method::TaskArithmetic => "task_arithmetic",
        }
    }

    pub(crate) fn combine(self) -> Combine {
        match self {
            Method::Linear => Combine::Normalized,
            Method::Sum => Combine::Sum,
            Method::TaskArithmetic => Combine::Delta,
        }
    }
}

/// Checks that `weights` and the input names fit `method`: every input but `base` has a
/// finite weight, every weight names an input, `base` is there exactly when the method
/// needs it, there are enough models, and a normalized merge does not divide by zero.
pub fn check_names<'a>(
    method: Method,
    weights: &BTreeMap<String, f64>,
    inputs: impl IntoIterator<Item = &'a str>,
) -> Result<(), MergeError> {
    let inputs: Vec<&str> = inputs.into_iter().collect();
    let bad = |message: String| Err(MergeError::Recipe(message));
    let has_base = inputs.contains(&BASE);
    if weights.contains_key(BASE) {
        return bad(format!(
            "`weights` names `{BASE}`, the base model of task arithmetic, which takes no weight"
        ));
    }
    if let Some(name) = weights.keys().find(|name| !inputs.contains(&name.as_str())) {
        return bad(format!(
            "`weights` names `{name}`, which is not an input (inputs: {})",
            listing(&inputs)
        ));
    }
    let models: Vec<&str> = inputs.iter().copied().filter(|n| *n != BASE).collect();
    if let Some(name) = models.iter().find(|name| !weights.contains_key(**name)) {
        return bad(format!("Input `{name}` has no weight in `weights`"));
    }
    if let Some((name, weight)) = weights.iter().find(|(_, w)| !w.is_finite()) {
        return bad(format!(
            "The weight of `{name}` is {weight}, not a finite number"
        ));
    }
    match method {
        Method::TaskArithmetic => {
            if !has_base {
                return bad(format!(
                    "`task_arithmetic` needs an input named `{BASE}`: the model the others are deltas from"
                ));
            }
            if models.is_empty() {
                return bad(format!(
                    "`task_arithmetic` needs at least one input besides `{BASE}`"
                ));
            }
        }
        Method::Linear | Method::Sum => {
            if has_base {
                return bad(format!(
                    "Input `{BASE}` is the base model of task arithmetic; `{}` takes no base (rename the input, or use method `task_arithmetic`)",
                    method.name()
                ));
            }
            if models.len() < 2 {
                return bad(format!(
                    "`{}` needs at least two models, got {}",
                    method.name(),
                    listing(&models)
                ));
            }
        }
    }
    if method == Method::Linear {
        let weights: Vec<f32> = models.iter().map(|name| weights[*name] as f32).collect();
        if super::kernel::weight_sum(&weights) == 0.0 {
            return bad(
                "The weights sum to 0, so `linear` (which divides by their sum) is undefined: use method `sum`, or other weights"
                    .into(),
            );
        }
    }
    Ok(())
}

fn listing(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A checked merge: models (name, folder, weight) in name order, the base, the output type.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The method.
    pub method: Method,
    /// The merged models, by input name (never `base`), in name order.
    pub models: Vec<(String, PathBuf, f64)>,
    /// The base model of task arithmetic.
    pub base: Option<PathBuf>,
    /// The output element type; `None`: the inputs' own.
    pub dtype: Option<FloatType>,
}

impl Recipe {
    /// A recipe from input folders by name and weights by name.
    pub fn new(
        method: Method,
        inputs: &BTreeMap<String, PathBuf>,
        weights: &BTreeMap<String, f64>,
        dtype: Option<FloatType>,
    ) -> Result<Self, MergeError> {
        check_names(method, weights, inputs.keys().map(String::as_str))?;
        Ok(Recipe {
            method,
            models: inputs
                .iter()
                .filter(|(name, _)| name.as_str() != BASE)
                .map(|(name, path)| (name.clone(), path.clone(), weights[name]))
                .collect(),
            base: inputs.get(BASE).cloned(),
            dtype,
        })
    }

    /// Every input as (name, folder): the base first, then the models.
    pub fn inputs(&self) -> Vec<(&str, &PathBuf)> {
        self.base
            .iter()
            .map(|path| (BASE, path))
            .chain(
                self.models
                    .iter()
                    .map(|(name, path, _)| (name.as_str(), path)),
            )
            .collect()
    }

    /// The weights, in model order.
    pub fn weights(&self) -> Vec<f64> {
        self.models.iter().map(|(_, _, weight)| *weight).collect()
    }
}

/// Reads a `dtype` name.
pub fn parse_dtype(name: &str) -> Result<FloatType, MergeError> {
    FloatType::parse(name).ok_or_else(|| {
        MergeError::Recipe(format!(
            "Unknown dtype `{name}` (known: {FLOAT_TYPE_NAMES})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    fn message(result: Result<(), MergeError>) -> String {
        result.expect_err("rejected").to_string()
    }

    #[test]
    fn weights_and_inputs_must_match() {
        let three = ["abduction", "deduction", "induction"];
        let good = weights(&[("abduction", 0.1), ("deduction", 1.0), ("induction", 0.2)]);
        assert!(check_names(Method::Linear, &good, three).is_ok());

        let missing = weights(&[("abduction", 0.1), ("deduction", 1.0)]);
        let text = message(check_names(Method::Linear, &missing, three));
        assert!(text.contains("Input `induction` has no weight"), "{text}");

        let extra = weights(&[("deduction", 1.0), ("induction", 0.2), ("typo", 0.1)]);
        let text = message(check_names(
            Method::Linear,
            &extra,
            ["deduction", "induction"],
        ));
        assert!(text.contains("`typo`, which is not an input"), "{text}");

        let one = weights(&[("deduction", 1.0)]);
        let text = message(check_names(Method::Linear, &one, ["deduction"]));
        assert!(text.contains("at least two models"), "{text}");

        let zero = weights(&[("deduction", 1.0), ("induction", -1.0)]);
        let text = message(check_names(
            Method::Linear,
            &zero,
            ["deduction", "induction"],
        ));
        assert!(text.contains("sum to 0"), "{text}");
        assert!(check_names(Method::Sum, &zero, ["deduction", "induction"]).is_ok());

        let nan = weights(&[("deduction", f64::NAN), ("induction", 1.0)]);
        let text = message(check_names(Method::Sum, &nan, ["deduction", "induction"]));
        assert!(text.contains("`deduction` is NaN"), "{text}");
    }

    #[test]
    fn the_base_belongs_to_task_arithmetic() {
        let one = weights(&[("deduction", 0.5)]);
        assert!(check_names(Method::TaskArithmetic, &one, ["base", "deduction"]).is_ok());
        let text = message(check_names(Method::TaskArithmetic, &one, ["deduction"]));
        assert!(text.contains("needs an input named `base`"), "{text}");
        let text = message(check_names(
            Method::Linear,
            &weights(&[("deduction", 0.5), ("induction", 0.5)]),
            ["base", "deduction", "induction"],
        ));
        assert!(text.contains("takes no base"), "{text}");
        let text = message(check_names(
            Method::TaskArithmetic,
            &weights(&[("base", 1.0), ("deduction", 0.5)]),
            ["base", "deduction"],
        ));
        assert!(text.contains("takes no weight"), "{text}");
        assert!(Method::parse("slerp")
            .unwrap_err()
            .to_string()
            .contains("Unknown merge method `slerp`"));
    }
}
