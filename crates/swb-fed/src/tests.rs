//! The protocol's arithmetic end to end, in memory: three parties' totals shared,
//! exchanged and revealed give what the plaintext computation over all rows gives.

use crate::field::{Fp, add_into, reveal, split};
use crate::query::*;
use crate::table::{ColumnType, Table};
use rand::{Rng, SeedableRng};

fn schema() -> Vec<DeclaredColumn> {
    let col = |name: &str, kind, levels: &[&str]| DeclaredColumn {
        name: name.into(),
        kind,
        levels: levels.iter().map(|l| l.to_string()).collect(),
    };
    vec![
        col("age", ColumnType::Int, &[]),
        col("weight", ColumnType::Float, &[]),
        col("y", ColumnType::Float, &[]),
        col("sex", ColumnType::Category, &["f", "m"]),
        col("smoker", ColumnType::Category, &["no", "yes"]),
    ]
}

struct Row {
    age: f64,
    weight: f64,
    y: f64,
    sex: &'static str,
    smoker: &'static str,
}

/// A party's rows: values on a 1/1024 grid (exact in fixed point), levels in a
/// party-specific order of first appearance.
fn rows(seed: u64, n: usize) -> Vec<Row> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let age = rng.random_range(20..80) as f64;
            let weight = rng.random_range(200..480) as f64 / 4.0;
            let noise = rng.random_range(-4096..4096) as f64 / 1024.0;
            Row {
                age,
                weight,
                y: 1.5 + 0.25 * age - 0.5 * weight + noise,
                sex: if rng.random_bool(0.5) { "m" } else { "f" },
                smoker: if rng.random_bool(0.3) { "yes" } else { "no" },
            }
        })
        .collect()
}

fn table(rows: &[Row]) -> Table {
    let mut csv = String::from("sex,age,weight,y,smoker\n");
    for r in rows {
        csv += &format!("{},{},{},{},{}\n", r.sex, r.age, r.weight, r.y, r.smoker);
    }
    Table::from_csv(csv.as_bytes()).unwrap()
}

/// Runs `query` the way the servers do: local totals, shares exchanged, sums
/// revealed, combined.
fn federated(query: &Query, parties: &[Table], rules: &Rules) -> Result<QueryResult, Refusal> {
    let schema = schema();
    let locals = (parties.iter())
        .map(|t| local(query, &schema, t, rules))
        .collect::<Result<Vec<_>, _>>()?;
    let release = locals.iter().map(|l| l.release).max().unwrap();
    let n = parties.len();
    // shares[i][j]: party i's share for party j.
    let shares: Vec<Vec<Vec<Fp>>> = locals
        .iter()
        .map(|l| split(&l.shaped(release), n))
        .collect();
    let sums: Vec<Vec<Fp>> = (0..n)
        .map(|j| {
            let mut s = shares[0][j].clone();
            for share in &shares[1..] {
                add_into(&mut s, &share[j]);
            }
            s
        })
        .collect();
    Ok(combine(query, &schema, release, &reveal(&sums)).unwrap())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-300)
}

fn query(stat: Stat, group_by: Option<&str>) -> Query {
    Query {
        dataset: "patients".into(),
        stat,
        group_by: group_by.map(Into::into),
        epsilon: None,
    }
}

fn col(name: &str) -> String {
    name.into()
}

#[test]
fn statistics_equal_the_plaintext_computation() {
    let data: Vec<Vec<Row>> = [(1, 300), (2, 450), (3, 250)]
        .iter()
        .map(|&(seed, n)| rows(seed, n))
        .collect();
    let parties: Vec<Table> = data.iter().map(|r| table(r)).collect();
    let all: Vec<&Row> = data.iter().flatten().collect();
    let rules = Rules::default();
    let n = all.len() as f64;

    let r = federated(&query(Stat::Count, None), &parties, &rules).unwrap();
    assert_eq!(r.groups[0].n, 1000);

    let r = federated(
        &query(
            Stat::Sum {
                column: col("weight"),
            },
            None,
        ),
        &parties,
        &rules,
    )
    .unwrap();
    let sum: f64 = all.iter().map(|r| r.weight).sum();
    assert_eq!(r.groups[0].value, Value::Sum { sum });

    let r = federated(
        &query(Stat::Mean { column: col("age") }, None),
        &parties,
        &rules,
    )
    .unwrap();
    let mean = all.iter().map(|r| r.age).sum::<f64>() / n;
    let Value::Mean { mean: Some(m) } = r.groups[0].value else {
        panic!("{r:?}")
    };
    assert!(close(m, mean), "{m} {mean}");

    // Grouped variance, two-pass in plaintext.
    let r = federated(
        &query(Stat::Variance { column: col("y") }, Some("sex")),
        &parties,
        &rules,
    )
    .unwrap();
    for (g, level) in ["f", "m"].iter().enumerate() {
        let ys: Vec<f64> = all
            .iter()
            .filter(|r| r.sex == *level)
            .map(|r| r.y)
            .collect();
        let m = ys.iter().sum::<f64>() / ys.len() as f64;
        let var = ys.iter().map(|y| (y - m) * (y - m)).sum::<f64>() / (ys.len() - 1) as f64;
        assert_eq!(r.groups[g].group.as_deref(), Some(*level));
        assert_eq!(r.groups[g].n, ys.len() as u64);
        let Value::Variance { variance: Some(v) } = r.groups[g].value else {
            panic!()
        };
        assert!(close(v, var), "{v} {var}");
    }

    let edges = vec![20.0, 40.0, 60.0, 70.0];
    let r = federated(
        &query(
            Stat::Histogram {
                column: col("age"),
                edges: edges.clone(),
            },
            None,
        ),
        &parties,
        &rules,
    )
    .unwrap();
    let mut counts = vec![0u64; 3];
    let mut above = 0;
    for row in &all {
        match edges
            .windows(2)
            .position(|w| w[0] <= row.age && row.age < w[1])
        {
            Some(i) => counts[i] += 1,
            None if row.age == 70.0 => counts[2] += 1,
            None => above += 1,
        }
    }
    assert_eq!(
        r.groups[0].value,
        Value::Histogram {
            counts,
            below: 0,
            above
        }
    );

    let r = federated(
        &query(
            Stat::Table {
                rows: col("sex"),
                columns: col("smoker"),
            },
            None,
        ),
        &parties,
        &rules,
    )
    .unwrap();
    let cell = |s: &str, k: &str| all.iter().filter(|r| r.sex == s && r.smoker == k).count() as u64;
    assert_eq!(
        r.groups[0].value,
        Value::Table {
            counts: vec![
                vec![cell("f", "no"), cell("f", "yes")],
                vec![cell("m", "no"), cell("m", "yes")]
            ]
        }
    );

    let r = federated(
        &query(
            Stat::Ols {
                y: col("y"),
                x: vec![col("age"), col("weight")],
            },
            None,
        ),
        &parties,
        &rules,
    )
    .unwrap();
    let (beta, se) = plaintext_ols(&all);
    let Value::Ols { coefficients, df } = &r.groups[0].value else {
        panic!()
    };
    assert_eq!(*df, 997);
    for (i, c) in coefficients.iter().enumerate() {
        assert!(close(c.estimate, beta[i]), "{c:?} {}", beta[i]);
        assert!(close(c.std_error, se[i]), "{c:?} {}", se[i]);
    }
    assert!((coefficients[1].estimate - 0.25).abs() < 0.05);
}

/// OLS by normal equations solved with Gaussian elimination on the rows
/// themselves, residuals summed explicitly.
#[allow(clippy::needless_range_loop)]
fn plaintext_ols(rows: &[&Row]) -> (Vec<f64>, Vec<f64>) {
    let xs: Vec<[f64; 3]> = rows.iter().map(|r| [1.0, r.age, r.weight]).collect();
    let mut a = [[0f64; 4]; 3];
    for (x, r) in xs.iter().zip(rows) {
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += x[i] * x[j];
            }
            a[i][3] += x[i] * r.y;
        }
    }
    // Inverse by Gauss-Jordan on [A | I].
    let mut m = [[0f64; 6]; 3];
    for i in 0..3 {
        m[i][..3].copy_from_slice(&a[i][..3]);
        m[i][3 + i] = 1.0;
    }
    for c in 0..3 {
        let piv = m[c][c];
        for v in m[c].iter_mut() {
            *v /= piv;
        }
        for r in 0..3 {
            if r != c {
                let f = m[r][c];
                for k in 0..6 {
                    m[r][k] -= f * m[c][k];
                }
            }
        }
    }
    let inv = |i: usize, j: usize| m[i][3 + j];
    let beta: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| inv(i, j) * a[j][3]).sum())
        .collect();
    let rss: f64 = (xs.iter().zip(rows))
        .map(|(x, r)| {
            let e = r.y - (0..3).map(|i| beta[i] * x[i]).sum::<f64>();
            e * e
        })
        .sum();
    let sigma2 = rss / (rows.len() - 3) as f64;
    let se = (0..3).map(|i| (sigma2 * inv(i, i)).sqrt()).collect();
    (beta, se)
}

#[test]
fn rules_refuse_by_name_and_small_cells_release_only_the_total() {
    let parties: Vec<Table> = [(1, 300), (2, 8), (3, 250)]
        .iter()
        .map(|&(seed, n)| table(&rows(seed, n)))
        .collect();
    let rules = Rules::default();
    let e = federated(&query(Stat::Count, None), &parties, &rules).unwrap_err();
    assert_eq!(e.rule, "min_rows");
    assert!(!e.message.contains('8'), "a refusal names no count: {e:?}");

    // The second party has exactly two rows in the first bin: a small cell, so
    // only the total is released.
    let mut second = rows(2, 40);
    for (i, r) in second.iter_mut().enumerate() {
        r.age = if i < 2 { 20.0 } else { r.age.max(21.0) };
    }
    let parties = vec![table(&rows(1, 300)), table(&second), table(&rows(3, 250))];
    let q = query(
        Stat::Histogram {
            column: col("age"),
            edges: vec![20.0, 21.0, 80.0],
        },
        None,
    );
    let r = federated(&q, &parties, &rules).unwrap();
    assert_eq!(r.suppressed.as_deref(), Some("min_cell"));
    assert_eq!(r.groups[0].n, 590);
    assert_eq!(r.groups[0].value, Value::Count {});

    let strict = Rules {
        min_group_rows: 30,
        ..Rules::default()
    };
    let e = federated(&query(Stat::Count, Some("sex")), &parties, &strict).unwrap_err();
    assert_eq!(e.rule, "min_group_rows");

    let few = Rules {
        rows_per_parameter: 20,
        ..Rules::default()
    };
    let ols = query(
        Stat::Ols {
            y: col("y"),
            x: vec![col("age"), col("weight")],
        },
        None,
    );
    assert_eq!(
        federated(&ols, &parties, &few).unwrap_err().rule,
        "rows_per_parameter"
    );

    let many = query(
        Stat::Histogram {
            column: col("age"),
            edges: (0..=60).map(f64::from).collect(),
        },
        None,
    );
    assert_eq!(
        federated(&many, &parties, &rules).unwrap_err().rule,
        "max_bins"
    );
    let undeclared = query(
        Stat::Mean {
            column: col("name"),
        },
        None,
    );
    assert_eq!(
        federated(&undeclared, &parties, &rules).unwrap_err().rule,
        "declared_columns"
    );
    let not_numeric = query(Stat::Mean { column: col("sex") }, None);
    assert_eq!(
        federated(&not_numeric, &parties, &rules).unwrap_err().rule,
        "declared_columns"
    );
}

#[test]
fn an_undeclared_level_is_refused_without_naming_it() {
    let csv = b"sex,age,weight,y,smoker\n"
        .iter()
        .copied()
        .chain((0..20).flat_map(|i| {
            format!("{},30,70,1,no\n", if i == 7 { "CANARY" } else { "f" }).into_bytes()
        }));
    let t = Table::from_csv(&csv.collect::<Vec<u8>>()).unwrap();
    let e = local(
        &query(Stat::Count, Some("sex")),
        &schema(),
        &t,
        &Rules::default(),
    )
    .unwrap_err();
    assert_eq!(e.rule, "dataset");
    assert!(!e.message.contains("CANARY"), "{e:?}");
}

#[test]
fn values_too_large_to_add_exactly_are_refused() {
    let mut csv = String::from("sex,age,weight,y,smoker\n");
    for _ in 0..20 {
        csv += "f,30,1e30,1,no\n";
    }
    let t = Table::from_csv(csv.as_bytes()).unwrap();
    let q = query(
        Stat::Variance {
            column: col("weight"),
        },
        None,
    );
    assert_eq!(
        local(&q, &schema(), &t, &Rules::default())
            .unwrap_err()
            .rule,
        "range"
    );
}

#[test]
fn noise_parts_add_up_to_laplace_noise_of_the_right_scale() {
    // Three parties' parts over many draws: mean about 0, variance about 2b².
    let (epsilon, sensitivity, draws) = (0.5, 1.0, 20_000);
    let b: f64 = sensitivity / epsilon;
    let mut sum = 0.0;
    let mut squares = 0.0;
    for _ in 0..draws {
        let mut total = [0i128];
        for _ in 0..3 {
            add_noise(&mut total, epsilon, sensitivity, 3);
        }
        let x = total[0] as f64;
        sum += x;
        squares += x * x;
    }
    let mean = sum / draws as f64;
    let var = squares / draws as f64 - mean * mean;
    assert!(mean.abs() < 0.15, "{mean}");
    // 2b² = 8, plus the rounding of each part (3 × 1/12).
    assert!((var - (2.0 * b * b + 0.25)).abs() < 0.8, "{var}");
}

#[test]
fn noise_is_for_counts_and_a_budget_demands_it() {
    let t = table(&rows(1, 50));
    let schema = schema();
    let mut q = query(Stat::Mean { column: col("age") }, None);
    q.epsilon = Some(1.0);
    let e = local(&q, &schema, &t, &Rules::default()).unwrap_err();
    assert_eq!(e.rule, "privacy_budget");
    q.stat = Stat::Count;
    q.epsilon = Some(0.0);
    assert_eq!(
        local(&q, &schema, &t, &Rules::default()).unwrap_err().rule,
        "privacy_budget"
    );
    q.epsilon = None;
    let budget = Rules {
        epsilon_budget: Some(1.0),
        ..Rules::default()
    };
    assert_eq!(
        local(&q, &schema, &t, &budget).unwrap_err().rule,
        "privacy_budget"
    );
    q.epsilon = Some(0.5);
    assert!(local(&q, &schema, &t, &budget).is_ok());
    // A party may not keep a looser budget than the manifest's.
    assert!(Rules::default().at_least(&budget).is_err());
    assert!(budget.at_least(&Rules::default()).is_ok());
}
