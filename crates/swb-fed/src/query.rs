//! Queries: the statistics a researcher may ask for, what each party computes of its
//! own rows (a vector of integer totals, the only thing it shares, as shares), the
//! disclosure rules each party checks first, and the result made of the joint totals.

use crate::field::{LOCAL_BOUND, SCALE};
use crate::table::{ColumnType, Data, MISSING, Table};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A column of a federation's shared schema: every party's dataset has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclaredColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// The levels of a categorical column, the same at every party (so that no
    /// party's labels are ever sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<String>,
}

/// A statistic of declared columns. Rows missing a value the statistic uses are left
/// out (complete cases).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stat {
    Count,
    Sum {
        column: String,
    },
    Mean {
        column: String,
    },
    Variance {
        column: String,
    },
    /// Counts per bin; `edges` are the bins' bounds, increasing (n + 1 edges make
    /// n bins, each [lower, upper), the last one closed); values outside them are
    /// counted below and above.
    Histogram {
        column: String,
        edges: Vec<f64>,
    },
    /// A contingency table of two categorical columns.
    Table {
        rows: String,
        columns: String,
    },
    /// Ordinary least squares of `y` on `x` with an intercept: coefficients and
    /// their standard errors.
    Ols {
        y: String,
        x: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The federation's dataset (its name in the manifest).
    pub dataset: String,
    pub stat: Stat,
    /// A declared categorical column: the statistic per level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// Differential privacy: Laplace noise of scale sensitivity/ε on every released
    /// count (count, histogram and table only), spent from each party's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

/// The largest ε a query may spend at once.
pub const MAX_EPSILON: f64 = 10.0;

impl Query {
    /// What parties commit to: the SHA-256 of the query's canonical JSON.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("serializable");
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }
}

/// Limits a party sets on what it releases. Checked by each party on its own rows
/// before it sends anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Rows a query must use at this party.
    pub min_rows: u64,
    /// Rows each group of a grouped query must have at this party (0 allowed).
    pub min_group_rows: u64,
    /// A histogram bin or table cell counting 1 to min_cell − 1 rows at this party
    /// releases only the total.
    pub min_cell: u64,
    /// Bins of a histogram.
    pub max_bins: usize,
    /// Groups, and cells of a contingency table.
    pub max_levels: usize,
    /// Rows per parameter of a regression, at least.
    pub rows_per_parameter: u64,
    /// When set, this party answers only queries with differential-privacy noise,
    /// and their ε add up to at most this, per dataset of a federation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon_budget: Option<f64>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_rows: 10,
            min_group_rows: 5,
            min_cell: 5,
            max_bins: 50,
            max_levels: 100,
            rows_per_parameter: 3,
            epsilon_budget: None,
        }
    }
}

impl Rules {
    /// Whether `self` is at least as strict as `floor` on every rule.
    pub fn at_least(&self, floor: &Rules) -> Result<(), String> {
        let checks = [
            ("min_rows", self.min_rows >= floor.min_rows),
            (
                "min_group_rows",
                self.min_group_rows >= floor.min_group_rows,
            ),
            ("min_cell", self.min_cell >= floor.min_cell),
            ("max_bins", self.max_bins <= floor.max_bins),
            ("max_levels", self.max_levels <= floor.max_levels),
            (
                "rows_per_parameter",
                self.rows_per_parameter >= floor.rows_per_parameter,
            ),
            (
                "epsilon_budget",
                match (self.epsilon_budget, floor.epsilon_budget) {
                    (_, None) => true,
                    (Some(mine), Some(floor)) => mine <= floor,
                    (None, Some(_)) => false,
                },
            ),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((rule, _)) => Err(format!(
                "{rule} is looser than the federation's manifest allows"
            )),
            None => Ok(()),
        }
    }
}

/// Why a query was refused: the rule, and a message that names no value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Refusal {
    pub rule: String,
    pub message: String,
}

fn refuse(rule: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        rule: rule.into(),
        message: message.into(),
    }
}

/// What a party agrees to release.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    /// Every total the statistic needs.
    Full,
    /// Only the row count (per group): a bin or cell was small somewhere.
    TotalOnly,
}

/// A query checked against the federation's schema: the columns it reads.
struct Plan<'a> {
    query: &'a Query,
    groups: Vec<String>,
    /// Numeric columns read, in order.
    numeric: Vec<&'a str>,
    /// Categorical columns read, with their declared levels.
    categories: Vec<(&'a str, &'a [String])>,
}

fn declared<'a>(
    schema: &'a [DeclaredColumn],
    name: &str,
    want: &str,
) -> Result<&'a DeclaredColumn, Refusal> {
    let c = (schema.iter().find(|c| c.name == name))
        .ok_or_else(|| refuse("declared_columns", format!("no declared column {name:?}")))?;
    let ok = match want {
        "numeric" => c.kind != ColumnType::Category,
        _ => c.kind == ColumnType::Category,
    };
    if !ok {
        return Err(refuse(
            "declared_columns",
            format!("column {name:?} is not {want}"),
        ));
    }
    Ok(c)
}

fn plan<'a>(
    query: &'a Query,
    schema: &'a [DeclaredColumn],
    rules: &Rules,
) -> Result<Plan<'a>, Refusal> {
    let mut numeric = Vec::new();
    let mut categories = Vec::new();
    let mut num = |name: &'a str| -> Result<(), Refusal> {
        declared(schema, name, "numeric")?;
        numeric.push(name);
        Ok(())
    };
    match &query.stat {
        Stat::Count => {}
        Stat::Sum { column } | Stat::Mean { column } | Stat::Variance { column } => num(column)?,
        Stat::Histogram { column, edges } => {
            num(column)?;
            if edges.len() < 2 || edges.len() - 1 > rules.max_bins {
                return Err(refuse(
                    "max_bins",
                    format!("a histogram has 1 to {} bins", rules.max_bins),
                ));
            }
            if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
                return Err(refuse("bins", "bin edges must be finite and increasing"));
            }
        }
        Stat::Table { .. } => {}
        Stat::Ols { y, x } => {
            num(y)?;
            if x.is_empty() {
                return Err(refuse("declared_columns", "a regression needs a column x"));
            }
            for c in x {
                num(c)?;
            }
        }
    }
    if let Stat::Table { rows, columns } = &query.stat {
        for name in [rows, columns] {
            let c = declared(schema, name, "categorical")?;
            categories.push((name.as_str(), c.levels.as_slice()));
        }
        let cells = categories[0].1.len() * categories[1].1.len();
        if cells > rules.max_levels {
            return Err(refuse(
                "max_levels",
                format!("a table has at most {} cells", rules.max_levels),
            ));
        }
    }
    match query.epsilon {
        Some(e) if !(e > 0.0 && e <= MAX_EPSILON) => {
            return Err(refuse(
                "privacy_budget",
                format!("epsilon is above 0 and at most {MAX_EPSILON}"),
            ));
        }
        Some(_)
            if !matches!(
                query.stat,
                Stat::Count | Stat::Histogram { .. } | Stat::Table { .. }
            ) =>
        {
            return Err(refuse(
                "privacy_budget",
                "noise applies to counts only: count, histogram and table",
            ));
        }
        None if rules.epsilon_budget.is_some() => {
            return Err(refuse(
                "privacy_budget",
                "this party answers only with differential-privacy noise: give an epsilon",
            ));
        }
        _ => {}
    }
    let groups = match &query.group_by {
        None => vec![],
        Some(g) => {
            let c = declared(schema, g, "categorical")?;
            if c.levels.len() > rules.max_levels {
                return Err(refuse(
                    "max_levels",
                    format!("at most {} groups", rules.max_levels),
                ));
            }
            categories.push((g.as_str(), c.levels.as_slice()));
            c.levels.clone()
        }
    };
    Ok(Plan {
        query,
        groups,
        numeric,
        categories,
    })
}

/// The length of one group's vector of totals.
fn group_len(stat: &Stat, release: Release) -> usize {
    if release == Release::TotalOnly {
        return 1;
    }
    match stat {
        Stat::Count => 1,
        Stat::Sum { .. } | Stat::Mean { .. } => 2,
        Stat::Variance { .. } => 3,
        Stat::Histogram { edges, .. } => 1 + edges.len() + 1,
        Stat::Table { .. } => 0, // set from the levels
        Stat::Ols { x, .. } => {
            let p = x.len() + 1;
            1 + p * (p + 1) / 2 + p + 1
        }
    }
}

/// A party's own totals for a query: computed, checked against its rules, never
/// sent as they are.
#[derive(Debug)]
pub struct Local {
    /// The totals, group after group, to be split into shares.
    totals: Vec<i128>,
    /// Each group's rows.
    counts: Vec<u64>,
    /// The release this party agrees to.
    pub release: Release,
}

/// A party's local totals for `query` over `table`, checked against its `rules`.
/// `table`'s categorical columns are mapped onto the declared levels.
pub fn local(
    query: &Query,
    schema: &[DeclaredColumn],
    table: &Table,
    rules: &Rules,
) -> Result<Local, Refusal> {
    let plan = plan(query, schema, rules)?;
    // The columns, as numbers (scaled) and declared level codes.
    let mut nums = Vec::new();
    for name in &plan.numeric {
        let c = table.column(name).ok_or_else(|| {
            refuse(
                "dataset",
                format!("this party's dataset has no column {name:?}"),
            )
        })?;
        let Data::Num(v) = &c.data else {
            return Err(refuse(
                "dataset",
                format!("column {name:?} of this party's dataset is not numeric"),
            ));
        };
        nums.push(v.as_slice());
    }
    let mut cats = Vec::new();
    for (name, levels) in &plan.categories {
        let c = table.column(name).ok_or_else(|| {
            refuse(
                "dataset",
                format!("this party's dataset has no column {name:?}"),
            )
        })?;
        let Data::Cat {
            codes,
            levels: local,
        } = &c.data
        else {
            return Err(refuse(
                "dataset",
                format!("column {name:?} of this party's dataset is not categorical"),
            ));
        };
        // Local code -> declared code.
        let map: Vec<u32> = (local.iter())
            .map(|l| {
                levels
                    .iter()
                    .position(|d| d == l)
                    .map_or(u32::MAX - 1, |i| i as u32)
            })
            .collect();
        if map.contains(&(u32::MAX - 1)) {
            return Err(refuse(
                "dataset",
                format!(
                    "column {name:?} of this party's dataset has a value outside the declared levels"
                ),
            ));
        }
        cats.push((codes.as_slice(), map));
    }
    let stat = &plan.query.stat;
    let groups = plan.groups.len().max(1);
    let table_dims = match stat {
        Stat::Table { .. } => Some((plan.categories[0].1.len(), plan.categories[1].1.len())),
        _ => None,
    };
    let width = table_dims.map_or(group_len(stat, Release::Full), |(r, c)| r * c);
    let mut acc = Acc {
        totals: vec![0i128; groups * width],
        overflow: None,
    };
    let group_col = plan.query.group_by.as_ref().map(|_| cats.len() - 1);
    let mut row = vec![0i64; nums.len()];
    let range = |name: &str| {
        refuse(
            "range",
            format!(
                "values of column {name:?} are too large to add up exactly; store them in a larger unit"
            ),
        )
    };
    'rows: for r in 0..table.rows {
        for (i, col) in nums.iter().enumerate() {
            let x = col[r];
            if x.is_nan() {
                continue 'rows;
            }
            let scaled = (x * SCALE).round();
            if scaled.abs() >= (1u64 << 62) as f64 {
                return Err(range(plan.numeric[i]));
            }
            row[i] = scaled as i64;
        }
        let mut level = [0usize; 3];
        for (i, (codes, map)) in cats.iter().enumerate() {
            let code = codes[r];
            if code == MISSING {
                continue 'rows;
            }
            level[i] = map[code as usize] as usize;
        }
        let g = group_col.map_or(0, |i| level[i]);
        let base = g * width;
        let t = &mut acc;
        match stat {
            Stat::Count => t.add(base, 1),
            Stat::Sum { .. } | Stat::Mean { .. } => {
                t.add(base, 1);
                t.add(base + 1, row[0] as i128);
            }
            Stat::Variance { .. } => {
                t.add(base, 1);
                t.add(base + 1, row[0] as i128);
                t.add(base + 2, (row[0] as i128) * (row[0] as i128));
            }
            Stat::Histogram { edges, .. } => {
                t.add(base, 1);
                let x = nums[0][r];
                let k = edges.len() - 1;
                let bin = if x < edges[0] {
                    k
                } else if x > edges[k] {
                    k + 1
                } else {
                    // The bin whose lower edge is the last one <= x (the last bin
                    // is closed).
                    edges
                        .partition_point(|e| *e <= x)
                        .saturating_sub(1)
                        .min(k - 1)
                };
                t.add(base + 1 + bin, 1);
            }
            Stat::Table { .. } => {
                let (_, c) = table_dims.expect("a table");
                t.add(base + level[0] * c + level[1], 1);
            }
            Stat::Ols { .. } => {
                // x₀ = 1 (scaled), then the x columns; y is column 0 of `row`.
                let p = row.len();
                let xs = |j: usize| -> i128 {
                    if j == 0 {
                        SCALE as i128
                    } else {
                        row[j] as i128
                    }
                };
                t.add(base, 1);
                let mut at = base + 1;
                for i in 0..p {
                    for j in i..p {
                        t.add(at, xs(i) * xs(j));
                        at += 1;
                    }
                }
                for i in 0..p {
                    t.add(at + i, xs(i) * row[0] as i128);
                }
                t.add(at + p, (row[0] as i128) * (row[0] as i128));
            }
        }
        if t.overflow.is_some() {
            break;
        }
    }
    if acc.overflow.is_some() || acc.totals.iter().any(|v| v.abs() > LOCAL_BOUND) {
        let column = plan.numeric.first().copied().unwrap_or("?");
        return Err(range(column));
    }
    let totals = acc.totals;
    // The rules, on this party's own rows.
    let count = |g: usize| -> u64 {
        match table_dims {
            Some(_) => totals[g * width..(g + 1) * width].iter().sum::<i128>() as u64,
            None => totals[g * width] as u64,
        }
    };
    let rows: u64 = (0..groups).map(count).sum();
    if rows < rules.min_rows {
        return Err(refuse(
            "min_rows",
            format!(
                "a query must use at least {} rows at each party",
                rules.min_rows
            ),
        ));
    }
    if plan.query.group_by.is_some()
        && (0..groups).any(|g| (1..rules.min_group_rows).contains(&count(g)))
    {
        return Err(refuse(
            "min_group_rows",
            format!(
                "each group must have 0 or at least {} rows at each party",
                rules.min_group_rows
            ),
        ));
    }
    if let Stat::Ols { x, .. } = stat {
        let params = x.len() as u64 + 1;
        if (0..groups).any(|g| count(g) > 0 && count(g) < params * rules.rows_per_parameter) {
            return Err(refuse(
                "rows_per_parameter",
                format!(
                    "a regression needs at least {} rows per parameter at each party",
                    rules.rows_per_parameter
                ),
            ));
        }
    }
    let cells: Vec<i128> = match (stat, table_dims) {
        (Stat::Histogram { .. }, _) => (0..groups)
            .flat_map(|g| totals[g * width + 1..(g + 1) * width].to_vec())
            .collect(),
        (_, Some(_)) => totals.clone(),
        _ => vec![],
    };
    let small = cells.iter().any(|&c| c > 0 && (c as u64) < rules.min_cell);
    let release = if small {
        Release::TotalOnly
    } else {
        Release::Full
    };
    Ok(Local {
        counts: (0..groups).map(count).collect(),
        totals,
        release,
    })
}

struct Acc {
    totals: Vec<i128>,
    overflow: Option<usize>,
}

impl Acc {
    fn add(&mut self, at: usize, v: i128) {
        match self.totals[at].checked_add(v) {
            Some(s) => self.totals[at] = s,
            None => self.overflow = Some(at),
        }
    }
}

impl Local {
    /// The totals to share once the parties agreed on `release` (the strictest any
    /// of them allows): all of them, or each group's row count.
    pub fn shaped(&self, release: Release) -> Vec<i128> {
        match release {
            Release::Full => self.totals.clone(),
            Release::TotalOnly => self.counts.iter().map(|&c| c as i128).collect(),
        }
    }
}

/// How much one row moves the released vector (L1): a count moves by 1; a
/// histogram's row count and one bin by 1 each; a table's cell by 1.
pub fn sensitivity(query: &Query, release: Release) -> f64 {
    match (&query.stat, release) {
        (Stat::Histogram { .. }, Release::Full) => 2.0,
        _ => 1.0,
    }
}

/// Adds this party's part of Laplace noise of scale `sensitivity/epsilon` to each
/// total: the difference of two Gamma(1/parties, scale) draws, so that the parties'
/// parts add up to one Laplace draw (each part is rounded to a whole count).
pub fn add_noise(totals: &mut [i128], epsilon: f64, sensitivity: f64, parties: usize) {
    use rand_distr::Distribution;
    let scale = sensitivity / epsilon;
    let gamma = rand_distr::Gamma::new(1.0 / parties as f64, scale).expect("positive parameters");
    let mut rng = rand::rng();
    for t in totals {
        let part = gamma.sample(&mut rng) - gamma.sample(&mut rng);
        *t += part.round() as i128;
    }
}

/// A released count: noise may take one below zero; it is shown as zero.
fn count(v: i128) -> u64 {
    v.max(0) as u64
}

/// One group's part of a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupResult {
    /// The group's level (grouped queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Rows used, over every party.
    pub n: u64,
    #[serde(flatten)]
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    Count {},
    Sum {
        sum: f64,
    },
    Mean {
        mean: Option<f64>,
    },
    Variance {
        variance: Option<f64>,
    },
    Histogram {
        counts: Vec<u64>,
        below: u64,
        above: u64,
    },
    Table {
        /// counts[i][j]: rows with the i-th level of `rows` and the j-th of `columns`.
        counts: Vec<Vec<u64>>,
    },
    Ols {
        coefficients: Vec<Coefficient>,
        /// Residual degrees of freedom.
        df: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Coefficient {
    pub name: String,
    pub estimate: f64,
    pub std_error: f64,
}

/// The released result of a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueryResult {
    pub groups: Vec<GroupResult>,
    /// Set when a party's rule held back all but the totals: the rule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// The ε of the differential-privacy noise in the counts, when there is noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

/// The result from the joint totals (the revealed sum of every party's totals).
pub fn combine(
    query: &Query,
    schema: &[DeclaredColumn],
    release: Release,
    totals: &[i128],
) -> Result<QueryResult, String> {
    let group_levels: Vec<Option<String>> = match &query.group_by {
        Some(g) => (schema.iter().find(|c| &c.name == g))
            .map(|c| c.levels.iter().cloned().map(Some).collect())
            .unwrap_or_default(),
        None => vec![None],
    };
    let groups = group_levels.len();
    if groups == 0 || !totals.len().is_multiple_of(groups) {
        return Err("the joint totals do not fit the query".into());
    }
    let width = totals.len() / groups;
    let s = SCALE;
    let mut out = Vec::new();
    for (g, group) in group_levels.into_iter().enumerate() {
        let t = &totals[g * width..(g + 1) * width];
        let (n, value) = match (&query.stat, release) {
            (_, Release::TotalOnly) | (Stat::Count, _) => (count(t[0]), Value::Count {}),
            (Stat::Sum { .. }, _) => (
                t[0] as u64,
                Value::Sum {
                    sum: t[1] as f64 / s,
                },
            ),
            (Stat::Mean { .. }, _) => (
                t[0] as u64,
                Value::Mean {
                    mean: (t[0] > 0).then(|| t[1] as f64 / s / t[0] as f64),
                },
            ),
            (Stat::Variance { .. }, _) => {
                let n = t[0];
                // n·Σx² − (Σx)², exact when it fits; the sample variance of it.
                let variance = (n > 1).then(|| {
                    let num = exact_or_float(n, t[2], t[1]);
                    num / (s * s) / (n as f64 * (n - 1) as f64)
                });
                (n as u64, Value::Variance { variance })
            }
            (Stat::Histogram { edges, .. }, _) => {
                let k = edges.len() - 1;
                (
                    count(t[0]),
                    Value::Histogram {
                        counts: t[1..=k].iter().map(|&c| count(c)).collect(),
                        below: count(t[1 + k]),
                        above: count(t[2 + k]),
                    },
                )
            }
            (Stat::Table { rows, columns }, _) => {
                let levels = |name: &str| {
                    (schema.iter().find(|c| c.name == name)).map_or(0, |c| c.levels.len())
                };
                let (r, c) = (levels(rows), levels(columns));
                let counts: Vec<Vec<u64>> = (0..r)
                    .map(|i| t[i * c..(i + 1) * c].iter().map(|&v| count(v)).collect())
                    .collect();
                (count(t.iter().sum::<i128>()), Value::Table { counts })
            }
            (Stat::Ols { x, .. }, _) => {
                let (n, value) = ols(t, x)?;
                (n, value)
            }
        };
        out.push(GroupResult { group, n, value });
    }
    Ok(QueryResult {
        groups: out,
        suppressed: (release == Release::TotalOnly).then(|| "min_cell".into()),
        epsilon: query.epsilon,
    })
}

/// n·q − l², in integers when that does not overflow.
fn exact_or_float(n: i128, q: i128, l: i128) -> f64 {
    match (n.checked_mul(q), l.checked_mul(l)) {
        (Some(a), Some(b)) => (a - b) as f64,
        _ => n as f64 * q as f64 - (l as f64) * (l as f64),
    }
}

// Matrix code reads best with indices.
#[allow(clippy::needless_range_loop)]
fn ols(t: &[i128], x: &[String]) -> Result<(u64, Value), String> {
    let p = x.len() + 1;
    let n = t[0];
    let s2 = SCALE * SCALE;
    let mut xtx = vec![vec![0f64; p]; p];
    let mut at = 1;
    for i in 0..p {
        for j in i..p {
            let v = t[at] as f64 / s2;
            xtx[i][j] = v;
            xtx[j][i] = v;
            at += 1;
        }
    }
    let xty: Vec<f64> = (0..p).map(|i| t[at + i] as f64 / s2).collect();
    let yty = t[at + p] as f64 / s2;
    if n <= p as i128 {
        return Err("a regression needs more rows than parameters".into());
    }
    let inv = invert_spd(&xtx).ok_or("the regression's columns are collinear")?;
    let beta: Vec<f64> = (0..p)
        .map(|i| (0..p).map(|j| inv[i][j] * xty[j]).sum())
        .collect();
    let rss = (yty - beta.iter().zip(&xty).map(|(b, v)| b * v).sum::<f64>()).max(0.0);
    let df = n as u64 - p as u64;
    let sigma2 = rss / df as f64;
    let names = std::iter::once("(intercept)".to_string()).chain(x.iter().cloned());
    let coefficients = names
        .enumerate()
        .map(|(i, name)| Coefficient {
            name,
            estimate: beta[i],
            std_error: (sigma2 * inv[i][i]).sqrt(),
        })
        .collect();
    Ok((n as u64, Value::Ols { coefficients, df }))
}

/// The inverse of a symmetric positive-definite matrix (Cholesky), or None.
#[allow(clippy::needless_range_loop)]
fn invert_spd(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let p = a.len();
    let mut l = vec![vec![0f64; p]; p];
    for i in 0..p {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d <= a[i][i].abs() * 1e-12 || d <= 0.0 {
                    return None;
                }
                l[i][j] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    // inv = (L⁻¹)ᵀ L⁻¹
    let mut li = vec![vec![0f64; p]; p];
    for i in 0..p {
        li[i][i] = 1.0 / l[i][i];
        for j in 0..i {
            let s: f64 = (j..i).map(|k| l[i][k] * li[k][j]).sum();
            li[i][j] = -s / l[i][i];
        }
    }
    let mut inv = vec![vec![0f64; p]; p];
    for i in 0..p {
        for j in 0..p {
            inv[i][j] = (i.max(j)..p).map(|k| li[k][i] * li[k][j]).sum();
        }
    }
    Some(inv)
}
