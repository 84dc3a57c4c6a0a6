use std::{collections::BTreeMap, fmt};

/// One parameter's value. Serialized as a plain JSON/YAML scalar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl ParamValue {
    /// The value as a number, for numeric comparisons in conditions.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Equality as a user means it: `3` equals `3.0`.
    pub fn same_as(&self, other: &ParamValue) -> bool {
        match (self.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }

    /// A scalar from a JSON value; `None` for null, arrays and objects.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Bool(b) => Some(Self::Bool(*b)),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Self::Int)
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(Self::Float)),
            serde_json::Value::String(s) => Some(Self::Str(s.clone())),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "boolean",
            Self::Int(_) => "integer",
            Self::Float(_) => "number",
            Self::Str(_) => "string",
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => b.fmt(f),
            Self::Int(i) => i.fmt(f),
            Self::Float(x) => x.fmt(f),
            Self::Str(s) => s.fmt(f),
        }
    }
}

/// A trial's configuration: parameter name → value (only active parameters).
pub type Params = BTreeMap<String, ParamValue>;

/// A canonical text key for a configuration, used to de-duplicate suggestions.
/// Numbers are keyed by value so that `3` and `3.0` are the same config.
pub fn config_key(params: &Params) -> String {
    let mut key = String::new();
    for (name, value) in params {
        key.push_str(name);
        key.push('=');
        match value {
            ParamValue::Int(i) => key.push_str(&format!("n:{}", *i as f64)),
            ParamValue::Float(x) => key.push_str(&format!("n:{x}")),
            ParamValue::Bool(b) => key.push_str(&format!("b:{b}")),
            ParamValue::Str(s) => key.push_str(&format!("s:{s:?}")),
        }
        key.push('\u{1f}');
    }
    key
}
