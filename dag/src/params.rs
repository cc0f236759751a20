//! Parameter schemas: what a node kind declares it accepts.
//!
//! A kind lists its parameters as [`ParamSpec`]s; the workflow loader checks every
//! value a user writes against them with [`check_type`] and fills in defaults, so a
//! kind always receives a complete, well-typed parameter map. Checking also
//! coerces (an integer where a float is expected becomes a float), which keeps
//! `lr = 1` and `lr = 1.0` on the same cache key. This module knows nothing about
//! TOML or files; locations belong to the spec loader.

use std::collections::BTreeMap;

use crate::value::Value;

/// The type of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Bool,
    Int,
    /// A float; integers are accepted and converted.
    Float,
    String,
    /// An array whose elements all have this type.
    List(Box<ParamType>),
    /// Any table.
    Table,
    /// A table whose values all have this type (keys are free).
    Map(Box<ParamType>),
    /// Either type; the first one that fits wins.
    Either(Box<ParamType>, Box<ParamType>),
    /// Anything, unchecked.
    Any,
}

impl ParamType {
    pub fn list(element: ParamType) -> ParamType {
        ParamType::List(Box::new(element))
    }

    pub fn map(value: ParamType) -> ParamType {
        ParamType::Map(Box::new(value))
    }

    pub fn either(first: ParamType, second: ParamType) -> ParamType {
        ParamType::Either(Box::new(first), Box::new(second))
    }

    /// A human description: `float`, `array of string`, `string or array of string`.
    pub fn describe(&self) -> String {
        match self {
            ParamType::Bool => "boolean".to_owned(),
            ParamType::Int => "integer".to_owned(),
            ParamType::Float => "float".to_owned(),
            ParamType::String => "string".to_owned(),
            ParamType::List(element) => format!("array of {}", element.describe_nested()),
            ParamType::Table => "table".to_owned(),
            ParamType::Map(value) => format!("table of {}", value.describe_nested()),
            ParamType::Either(first, second) => {
                format!("{} or {}", first.describe(), second.describe())
            }
            ParamType::Any => "any value".to_owned(),
        }
    }

    /// Like `describe`, parenthesized where an `or` would otherwise be ambiguous.
    fn describe_nested(&self) -> String {
        match self {
            ParamType::Either(..) => format!("({})", self.describe()),
            _ => self.describe(),
        }
    }
}

/// One declared parameter of a node kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// A required parameter has no default and must be given.
    pub required: bool,
    /// Filled in when the parameter is optional and not given. An optional
    /// parameter without a default is simply absent from the resolved map.
    pub default: Option<Value>,
    pub doc: &'static str,
}

impl ParamSpec {
    pub fn required(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
        ParamSpec {
            name,
            ty,
            required: true,
            default: None,
            doc,
        }
    }

    pub fn optional(
        name: &'static str,
        ty: ParamType,
        default: Option<Value>,
        doc: &'static str,
    ) -> ParamSpec {
        ParamSpec {
            name,
            ty,
            required: false,
            default,
            doc,
        }
    }
}

/// Checks `value` against `ty` and returns it coerced to the declared type
/// (integers become floats where a float is expected, also inside arrays and
/// tables), or an error text such as `expected float, found string`.
pub fn check_type(ty: &ParamType, value: &Value) -> Result<Value, String> {
    match (ty, value) {
        (ParamType::Any, _)
        | (ParamType::Bool, Value::Bool(_))
        | (ParamType::Int, Value::Int(_))
        | (ParamType::Float, Value::Float(_))
        | (ParamType::String, Value::String(_))
        | (ParamType::Table, Value::Table(_)) => Ok(value.clone()),
        (ParamType::Float, Value::Int(i)) => Ok(Value::Float(*i as f64)),
        (ParamType::List(element), Value::List(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                check_type(element, item).map_err(|_| {
                    format!(
                        "expected {}, found {} at index {index}",
                        ty.describe(),
                        item.type_name()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        (ParamType::Map(value_type), Value::Table(entries)) => entries
            .iter()
            .map(|(key, item)| {
                check_type(value_type, item)
                    .map(|checked| (key.clone(), checked))
                    .map_err(|_| {
                        format!(
                            "expected {}, found {} at key `{key}`",
                            ty.describe(),
                            item.type_name()
                        )
                    })
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Value::Table),
        (ParamType::Either(first, second), _) => check_type(first, value).or_else(|first_error| {
            check_type(second, value).map_err(|second_error| {
                // When one alternative has the value's shape (an array for an
                // array type), its error says more than "found array".
                if same_shape(first, value) {
                    first_error
                } else if same_shape(second, value) {
                    second_error
                } else {
                    mismatch(ty, value)
                }
            })
        }),
        _ => Err(mismatch(ty, value)),
    }
}

fn mismatch(ty: &ParamType, value: &Value) -> String {
    format!("expected {}, found {}", ty.describe(), value.type_name())
}

fn same_shape(ty: &ParamType, value: &Value) -> bool {
    matches!(
        (ty, value),
        (ParamType::List(_), Value::List(_)) | (ParamType::Map(_), Value::Table(_))
    )
}

/// `value` with numbers and booleans turned into strings wherever `ty` expects a string
/// (used for `--set` values, which arrive untyped from the shell).
pub fn scalars_as_strings(ty: &ParamType, value: &Value) -> Value {
    let expects_string = |ty: &ParamType| match ty {
        ParamType::String => true,
        ParamType::Either(first, second) => {
            **first == ParamType::String || **second == ParamType::String
        }
        _ => false,
    };
    match (ty, value) {
        (ty, Value::Int(_) | Value::Float(_) | Value::Bool(_)) if expects_string(ty) => {
            Value::String(value.to_string())
        }
        (ParamType::Map(inner), Value::Table(table)) => Value::Table(
            table
                .iter()
                .map(|(key, item)| (key.clone(), scalars_as_strings(inner, item)))
                .collect(),
        ),
        (ParamType::List(inner), Value::List(items)) => Value::List(
            items
                .iter()
                .map(|item| scalars_as_strings(inner, item))
                .collect(),
        ),
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scalars_become_strings_only_where_strings_are_expected() {
        let env = ParamType::map(ParamType::String);
        let mut table = BTreeMap::new();
        table.insert("TOP".to_string(), Value::Int(3));
        let fixed = scalars_as_strings(&env, &Value::Table(table));
        assert_eq!(fixed.get_path("TOP"), Some(&Value::String("3".into())));
        assert_eq!(
            scalars_as_strings(&ParamType::Int, &Value::Int(3)),
            Value::Int(3)
        );
    }

    use super::*;

    fn command_type() -> ParamType {
        ParamType::either(ParamType::String, ParamType::list(ParamType::String))
    }

    #[test]
    fn describe_names_types() {
        assert_eq!(ParamType::Float.describe(), "float");
        assert_eq!(
            ParamType::list(ParamType::String).describe(),
            "array of string"
        );
        assert_eq!(command_type().describe(), "string or array of string");
        assert_eq!(
            ParamType::map(ParamType::Float).describe(),
            "table of float"
        );
        assert_eq!(
            ParamType::list(ParamType::either(ParamType::Int, ParamType::String)).describe(),
            "array of (integer or string)"
        );
    }

    #[test]
    fn int_coerces_to_float_with_identical_key() {
        let from_int = check_type(&ParamType::Float, &Value::Int(1)).unwrap();
        let from_float = check_type(&ParamType::Float, &Value::Float(1.0)).unwrap();
        assert_eq!(from_int, Value::Float(1.0));
        assert_eq!(from_int.canonical_bytes(), from_float.canonical_bytes());
    }

    #[test]
    fn coercion_reaches_inside_maps_and_lists() {
        let weights = Value::Table(
            [
                ("a".to_owned(), Value::Int(1)),
                ("b".to_owned(), Value::Float(0.5)),
            ]
            .into_iter()
            .collect(),
        );
        let checked = check_type(&ParamType::map(ParamType::Float), &weights).unwrap();
        assert_eq!(checked.get_path("a"), Some(&Value::Float(1.0)));
        let list = Value::List(vec![Value::Int(2)]);
        assert_eq!(
            check_type(&ParamType::list(ParamType::Float), &list).unwrap(),
            Value::List(vec![Value::Float(2.0)])
        );
    }

    #[test]
    fn mismatches_name_expected_and_found() {
        assert_eq!(
            check_type(&ParamType::Float, &Value::from("x")).unwrap_err(),
            "expected float, found string"
        );
        assert_eq!(
            check_type(&ParamType::Int, &Value::Float(1.0)).unwrap_err(),
            "expected integer, found float"
        );
        assert_eq!(
            check_type(&command_type(), &Value::Int(3)).unwrap_err(),
            "expected string or array of string, found integer"
        );
        assert_eq!(
            check_type(
                &command_type(),
                &Value::List(vec![Value::from("a"), Value::Int(1)])
            )
            .unwrap_err(),
            "expected array of string, found integer at index 1"
        );
        let env = Value::Table(
            [("PATH".to_owned(), Value::Bool(true))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            check_type(&ParamType::map(ParamType::String), &env).unwrap_err(),
            "expected table of string, found boolean at key `PATH`"
        );
    }

    #[test]
    fn either_and_any_accept() {
        assert!(check_type(&command_type(), &Value::from("ls")).is_ok());
        assert!(check_type(&command_type(), &Value::List(vec![])).is_ok());
        assert!(check_type(&ParamType::Any, &Value::empty_table()).is_ok());
        assert!(check_type(&ParamType::Table, &Value::empty_table()).is_ok());
        assert!(check_type(&ParamType::Bool, &Value::Bool(true)).is_ok());
    }

    #[test]
    fn constructors() {
        let spec = ParamSpec::required("command", command_type(), "what to run");
        assert!(spec.required && spec.default.is_none());
        let spec = ParamSpec::optional("outputs", ParamType::String, Some("out".into()), "");
        assert!(!spec.required);
        assert_eq!(spec.default, Some(Value::from("out")));
    }
}
