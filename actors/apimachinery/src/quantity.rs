//! Kubernetes resource quantities ("100m", "1", "1.5", "64Mi", "1G", "1e3").
//!
//! A quantity is held exactly as a count of milli-units in an `i128`, rounded up (away from
//! zero) to the milli scale as upstream does when it defaults resource lists. That makes cpu,
//! memory and capacity comparisons exact; `i128` has room for exabytes times a thousand.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde_json::Value;

pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";
const TOO_LARGE: &str = "quantity is too large";

/// Digits beyond this cannot be held exactly in the `i128` mantissa.
const MAX_DIGITS: usize = 36;

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// "100m", "1", "5G".
    DecimalSI,
    /// "64Mi", "1Gi".
    BinarySI,
    /// "1e3", "5E-3".
    DecimalExponent,
}

#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    milli: i128,
    format: Format,
}

impl Quantity {
    pub fn from_milli(milli: i128, format: Format) -> Self {
        Quantity { milli, format }
    }

    pub fn from_units(units: i128, format: Format) -> Self {
        Quantity { milli: units.saturating_mul(1000), format }
    }

    /// The amount in thousandths: cpu "250m" is 250, memory "1Ki" is 1_024_000.
    pub fn milli_value(&self) -> i128 {
        self.milli
    }

    /// Whole units, rounded up like upstream's `Quantity.Value()`.
    pub fn value(&self) -> i128 {
        let q = self.milli / 1000;
        if self.milli % 1000 > 0 {
            q + 1
        } else {
            q
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.milli == 0
    }

    pub fn is_negative(&self) -> bool {
        self.milli < 0
    }

    /// For display and scoring only; comparisons should use `milli_value`.
    pub fn as_f64(&self) -> f64 {
        self.milli as f64 / 1000.0
    }

    /// The form the API server prints ("1.5" becomes "1500m", "0.5Gi" becomes "512Mi").
    pub fn canonical(&self) -> String {
        let sign = if self.milli < 0 { "-" } else { "" };
        let mag = self.milli.unsigned_abs();
        if mag == 0 {
            return "0".to_string();
        }
        // Binary suffixes only for whole amounts of at least 1Ki; otherwise decimal, so
        // nothing is lost and small values stay readable.
        if self.format == Format::BinarySI && mag.is_multiple_of(1000) && mag / 1000 >= 1024 {
            let mut v = mag / 1000;
            let mut power = 0;
            while power < 6 && v.is_multiple_of(1024) {
                v /= 1024;
                power += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
            return format!("{sign}{v}{suffix}");
        }
        let mut v = mag;
        let mut exp: i32 = -3;
        while exp < 18 && v.is_multiple_of(1000) {
            v /= 1000;
            exp += 3;
        }
        let suffix = match (self.format, exp) {
            (Format::DecimalExponent, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -3) => "m".to_string(),
            (_, 0) => String::new(),
            (_, 3) => "k".to_string(),
            (_, 6) => "M".to_string(),
            (_, 9) => "G".to_string(),
            (_, 12) => "T".to_string(),
            (_, 15) => "P".to_string(),
            _ => "E".to_string(),
        };
        format!("{sign}{v}{suffix}")
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.milli.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl FromStr for Quantity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_quantity(s)
    }
}

/// Splits a suffix into its format, power of 1024 and power of ten.
fn parse_suffix(s: &str) -> Result<(Format, u32, i64), String> {
    let decimal = |e| Ok((Format::DecimalSI, 0, e));
    let binary = |p| Ok((Format::BinarySI, p, 0));
    match s {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => {
            if let Some(rest) = s.strip_prefix(['e', 'E']) {
                let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                    let e: i64 = rest.parse().map_err(|_| TOO_LARGE.to_string())?;
                    return Ok((Format::DecimalExponent, 0, e));
                }
            }
            // Upstream tells a malformed string apart from an unknown suffix.
            let letters = s.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
            let tail = letters.strip_prefix(['+', '-']).unwrap_or(letters);
            if tail.bytes().all(|c| c.is_ascii_digit()) {
                Err(SUFFIX_ERROR.to_string())
            } else {
                Err(FORMAT_ERROR.to_string())
            }
        }
    }
}

/// Parses a quantity string into exact milli-units.
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let format_err = || FORMAT_ERROR.to_string();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(format_err()),
    };
    let num_len = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(format_err());
    }
    let (format, binary_power, exponent) = parse_suffix(suffix)?;

    // Exact mantissa and scale: value = mantissa * 10^-scale.
    let frac = frac_part.trim_end_matches('0');
    let digits = format!("{int_part}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS {
        return Err(TOO_LARGE.to_string());
    }
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| format_err())? };
    let scaled = 1024i128
        .checked_pow(binary_power)
        .and_then(|m| mantissa.checked_mul(m))
        .ok_or_else(|| TOO_LARGE.to_string())?;

    // milli = scaled * 10^(exponent + 3 - scale), rounding up what falls below a milli.
    let shift = exponent.saturating_add(3).saturating_sub(frac.len() as i64);
    let magnitude = if scaled == 0 {
        0
    } else if shift >= 0 {
        u32::try_from(shift)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|m| scaled.checked_mul(m))
            .ok_or_else(|| TOO_LARGE.to_string())?
    } else {
        match u32::try_from(-shift).ok().and_then(|s| 10i128.checked_pow(s)) {
            Some(div) => scaled / div + i128::from(scaled % div != 0),
            // Far below a milli: the round-up leaves exactly one.
            None => 1,
        }
    };
    Ok(Quantity { milli: if negative { -magnitude } else { magnitude }, format })
}

/// Quantities may be JSON strings or bare numbers (`cpu: 1`), as upstream accepts both.
pub fn parse_quantity_value(v: &Value) -> Result<Quantity, String> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => parse_quantity(&n.to_string().replace(".0e", "e")),
        _ => Err(FORMAT_ERROR.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> i128 {
        parse_quantity(s).unwrap().milli_value()
    }

    #[test]
    fn parses_common_forms() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("64Mi"), 64 * 1024 * 1024 * 1000);
        assert_eq!(milli("1G"), 1_000_000_000_000);
        assert_eq!(milli("1e3"), 1_000_000);
        assert_eq!(milli("1E3"), 1_000_000);
        assert_eq!(milli("1E"), 1_000_000_000_000_000_000_000);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("5."), 5000);
        assert_eq!(milli("-2k"), -2_000_000);
        assert_eq!(milli("+3"), 3000);
        assert_eq!(milli("0"), 0);
    }

    #[test]
    fn rounds_up_below_a_milli() {
        assert_eq!(milli("100n"), 1);
        assert_eq!(milli("1.0001"), 1001);
        assert_eq!(milli("1e-10"), 1);
        assert_eq!(milli("-1u"), -1);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_quantity("").unwrap_err(), FORMAT_ERROR);
        assert_eq!(parse_quantity("abc").unwrap_err(), FORMAT_ERROR);
        assert_eq!(parse_quantity(".").unwrap_err(), FORMAT_ERROR);
        assert_eq!(parse_quantity("1.2.3").unwrap_err(), FORMAT_ERROR);
        assert_eq!(parse_quantity("1K").unwrap_err(), SUFFIX_ERROR);
        assert_eq!(parse_quantity("1Mii").unwrap_err(), SUFFIX_ERROR);
        assert!(parse_quantity("1e999999").is_err());
    }

    #[test]
    fn canonical_forms_match_upstream() {
        let c = |s: &str| parse_quantity(s).unwrap().canonical();
        assert_eq!(c("1.5"), "1500m");
        assert_eq!(c("0.5Gi"), "512Mi");
        assert_eq!(c("1536Mi"), "1536Mi");
        assert_eq!(c("1024"), "1024");
        assert_eq!(c("1000"), "1k");
        assert_eq!(c("2Ki"), "2Ki");
        assert_eq!(c("1.5Ki"), "1536");
        assert_eq!(c("512Ki"), "512Ki");
        assert_eq!(c("100m"), "100m");
        assert_eq!(c("1e3"), "1e3");
        assert_eq!(c("1.5e3"), "1500");
        assert_eq!(c("-1G"), "-1G");
        assert_eq!(c("0Mi"), "0");
    }

    #[test]
    fn compares_across_formats() {
        let a = parse_quantity("1Gi").unwrap();
        let b = parse_quantity("1G").unwrap();
        assert!(a > b);
        assert_eq!(parse_quantity("1").unwrap(), parse_quantity("1000m").unwrap());
        assert_eq!(parse_quantity("250m").unwrap().value(), 1);
        assert_eq!(parse_quantity_value(&serde_json::json!(2)).unwrap().milli_value(), 2000);
        assert_eq!(parse_quantity_value(&serde_json::json!(0.5)).unwrap().milli_value(), 500);
    }
}
