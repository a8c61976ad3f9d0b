//! UCI Census-Income (KDD) reader: Protocol A of `docs/evaluation.md`.
//!
//! The file is gzipped, one row per line, 42 comma-separated columns (values are padded by a space
//! and trimmed here), no header. Attribute `#a` of `census-income.names` (0-based, in listed order)
//! sits at raw column `a` for `a < 24` and at `a + 1` from 24 on: raw column 24 is the instance
//! weight, never a feature. Raw column 41 is the income label (`50000+.` is positive).
//!
//! Tasks: `income` (the label column) and `never_married` (attribute #7, marital stat, equals
//! `Never married`); marital stat is therefore never a feature. Categorical values become ids with
//! [`uie_model::hashing::feature_id`] of the trimmed string, dense values are parsed as f32.
//! Rows are split train/validation/test by a shuffle seeded with `data.split_seed`, independent of
//! the model seed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use uie_model::hashing::{bucket, feature_id};
use uie_model::{Config, RawBatch};

use super::{Dataset, Splits};
use crate::error::TrainError;

/// Number of raw columns per line.
pub const N_COLUMNS: usize = 42;
/// Raw column of the instance weight (never a feature).
pub const WEIGHT_COLUMN: usize = 24;
/// Raw column of the income label.
pub const LABEL_COLUMN: usize = 41;
/// Raw column of marital stat (source of the `never_married` label).
pub const MARITAL_COLUMN: usize = 7;
/// The tasks this reader can label.
pub const TASKS: [&str; 2] = ["income", "never_married"];

/// The 40 attributes of `census-income.names` in listed order, as snake_case feature names.
pub const ATTRIBUTES: [&str; 40] = [
    "age",
    "class_of_worker",
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "education",
    "wage_per_hour",
    "enroll_in_edu_inst_last_wk",
    "marital_stat",
    "major_industry_code",
    "major_occupation_code",
    "race",
    "hispanic_origin",
    "sex",
    "member_of_a_labor_union",
    "reason_for_unemployment",
    "full_or_part_time_employment_stat",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "tax_filer_stat",
    "region_of_previous_residence",
    "state_of_previous_residence",
    "detailed_household_and_family_stat",
    "detailed_household_summary_in_household",
    "migration_code_change_in_msa",
    "migration_code_change_in_reg",
    "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt",
    "num_persons_worked_for_employer",
    "family_members_under_18",
    "country_of_birth_father",
    "country_of_birth_mother",
    "country_of_birth_self",
    "citizenship",
    "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits",
    "weeks_worked_in_year",
    "year",
];

/// Raw column of a feature, or an error naming it.
pub fn feature_column(name: &str) -> Result<usize, TrainError> {
    if name == ATTRIBUTES[MARITAL_COLUMN] {
        return Err(TrainError::UnknownFeature {
            name: name.to_string(),
            message: "is the source of the never_married label and may not be a feature".into(),
        });
    }
    match ATTRIBUTES.iter().position(|a| *a == name) {
        Some(a) if a < WEIGHT_COLUMN => Ok(a),
        Some(a) => Ok(a + 1),
        None => Err(TrainError::UnknownFeature {
            name: name.to_string(),
            message: format!(
                "not a census attribute (known: {})",
                ATTRIBUTES
                    .iter()
                    .filter(|a| **a != ATTRIBUTES[MARITAL_COLUMN])
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

#[derive(Clone, Copy)]
enum TaskSource {
    Income,
    NeverMarried,
}

/// Resolves `data.path` against `data_root` unless it is absolute.
pub fn data_path(config: &Config, data_root: &Path) -> PathBuf {
    let p = Path::new(&config.data.path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_root.join(p)
    }
}

/// Reads every row of the census file named by the config (no split).
pub fn read_all(config: &Config, data_root: &Path) -> Result<Dataset, TrainError> {
    let path = data_path(config, data_root);
    let file = std::fs::File::open(&path).map_err(|e| TrainError::io(&path, e))?;
    let empty = || TrainError::EmptyData(format!("{}: the file holds no rows", path.display()));
    if file.metadata().map_err(|e| TrainError::io(&path, e))?.len() == 0 {
        return Err(empty());
    }
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .read_to_string(&mut text)
        .map_err(|e| {
            TrainError::io(
                &path,
                std::io::Error::new(e.kind(), format!("not a complete gzip file: {e}")),
            )
        })?;
    if text.trim().is_empty() {
        return Err(empty());
    }
    parse(config, &text, &path)
}

/// Parses census text (already decompressed); `path` only names the source in errors.
pub fn parse(config: &Config, text: &str, path: &Path) -> Result<Dataset, TrainError> {
    let cats: Vec<(String, usize)> = config
        .features
        .categorical
        .iter()
        .map(|f| Ok((f.name.clone(), feature_column(&f.name)?)))
        .collect::<Result<_, TrainError>>()?;
    let dense: Vec<usize> = config
        .features
        .dense
        .iter()
        .map(|name| feature_column(name))
        .collect::<Result<_, TrainError>>()?;
    let tasks: Vec<TaskSource> = config
        .tasks
        .iter()
        .map(|t| match t.name.as_str() {
            "income" => Ok(TaskSource::Income),
            "never_married" => Ok(TaskSource::NeverMarried),
            other => Err(TrainError::UnknownTask {
                name: other.to_string(),
                known: TASKS.join(", "),
            }),
        })
        .collect::<Result<_, TrainError>>()?;

    let mut ids: Vec<Vec<i64>> = vec![Vec::new(); cats.len()];
    let mut dense_values = Vec::new();
    let mut labels = Vec::new();
    let mut n = 0usize;
    let mut cols: Vec<&str> = Vec::with_capacity(N_COLUMNS);
    let bad = |line: usize, column: usize, message: String| TrainError::Data {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    for (i, raw_line) in text.lines().enumerate() {
        let line_no = i + 1;
        if raw_line.trim().is_empty() {
            continue;
        }
        cols.clear();
        cols.extend(raw_line.split(',').map(str::trim));
        if cols.len() != N_COLUMNS {
            return Err(bad(
                line_no,
                cols.len().min(N_COLUMNS),
                format!("expected {N_COLUMNS} columns, found {}", cols.len()),
            ));
        }
        for (k, (_, c)) in cats.iter().enumerate() {
            ids[k].push(feature_id(cols[*c]));
        }
        for &c in &dense {
            let v: f32 = cols[c]
                .parse()
                .map_err(|_| bad(line_no, c, format!("{:?} is not a number", cols[c])))?;
            if !v.is_finite() {
                return Err(bad(line_no, c, format!("{:?} is not finite", cols[c])));
            }
            dense_values.push(v);
        }
        for t in &tasks {
            let y = match t {
                TaskSource::Income => match cols[LABEL_COLUMN] {
                    "50000+." => 1.0,
                    "- 50000." => 0.0,
                    other => {
                        return Err(bad(
                            line_no,
                            LABEL_COLUMN,
                            format!(
                                "income label {other:?} is neither \"- 50000.\" nor \"50000+.\""
                            ),
                        ))
                    }
                },
                TaskSource::NeverMarried => {
                    if cols[MARITAL_COLUMN] == "Never married" {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
            labels.push(y);
        }
        n += 1;
    }
    let categorical: BTreeMap<String, Vec<i64>> =
        cats.into_iter().map(|(name, _)| name).zip(ids).collect();
    Ok(Dataset {
        batch: RawBatch {
            n,
            categorical,
            dense: dense_values,
            history: None,
        },
        labels,
        users: Vec::new(),
        past_counts: Vec::new(),
    })
}

/// Splits rows into train / validation / test by a shuffle seeded with `data.split_seed`.
/// Each split keeps file order.
pub fn split(config: &Config, all: &Dataset) -> Result<Splits, TrainError> {
    let n = all.len();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut crate::rng::seeded(config.data.split_seed));
    let n_test = ((n as f64) * config.data.test_fraction).round() as usize;
    let n_val = ((n as f64) * config.data.val_fraction).round() as usize;
    if n_test + n_val >= n || n_test == 0 || n_val == 0 {
        return Err(TrainError::EmptyData(format!(
            "{n} rows cannot be split into non-empty train, validation ({n_val}) and test ({n_test}) sets"
        )));
    }
    let mut test = perm[..n_test].to_vec();
    let mut val = perm[n_test..n_test + n_val].to_vec();
    let mut train = perm[n_test + n_val..].to_vec();
    test.sort_unstable();
    val.sort_unstable();
    train.sort_unstable();
    let train = all.take(&train);
    let collisions = collisions(config, &train.batch);
    Ok(Splits {
        train,
        val: all.take(&val),
        test: all.take(&test),
        collisions,
        user_train_counts: BTreeMap::new(),
    })
}

/// Per categorical field (config order): distinct ids in `batch` and how many of them share their
/// bucket (`id mod buckets`) with another distinct id.
pub fn collisions(config: &Config, batch: &RawBatch) -> Vec<(String, usize, usize)> {
    config
        .features
        .categorical
        .iter()
        .map(|f| {
            let distinct: HashSet<i64> = batch
                .categorical
                .get(&f.name)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            let mut per_bucket: HashMap<usize, usize> = HashMap::new();
            for &id in &distinct {
                *per_bucket.entry(bucket(id, f.buckets)).or_default() += 1;
            }
            let colliding = per_bucket.values().filter(|&&c| c > 1).sum();
            (f.name.clone(), distinct.len(), colliding)
        })
        .collect()
}

/// Reads the census file named by the config and splits it.
pub fn load(config: &Config, data_root: &Path) -> Result<Splits, TrainError> {
    let all = read_all(config, data_root)?;
    if all.is_empty() {
        return Err(TrainError::EmptyData(format!(
            "{} has no rows",
            data_path(config, data_root).display()
        )));
    }
    split(config, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE_A: &str = "38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, Married-civilian spouse present, Manufacturing-durable goods, Machine operators assmblrs & inspctrs, White, Mexican (Mexicano), Female, Not in universe, Not in universe, Full-time schedules, 0, 0, 0, Joint one under 65 & one 65+, Not in universe, Not in universe, Spouse of householder, Spouse of householder, 1032.38, ?, ?, ?, Not in universe under 1 year old, ?, 4, Not in universe, Mexico, Mexico, Mexico, Foreign born- Not a citizen of U S , 0, Not in universe, 2, 12, 95, - 50000.";
    const LINE_B: &str = "44, Self-employed-not incorporated, 37, 12, Associates degree-occup /vocational, 0, Not in universe, Never married, Business and repair services, Professional specialty, White, All other, Female, Not in universe, Not in universe, PT for econ reasons usually PT, 0, 0, 2500, Joint both under 65, Not in universe, Not in universe, Spouse of householder, Spouse of householder, 1462.33, ?, ?, ?, Not in universe under 1 year old, ?, 1, Not in universe, United-States, United-States, United-States, Native- Born in the United States, 0, Yes, 2, 26, 95, 50000+.";

    fn config(extra_dense: &str, extra_cat: &str, task: &str) -> Config {
        let text = format!(
            r#"
[model]
name = "t"
embed_dim = 2
[features]
dense = ["age", "weeks_worked_in_year"{extra_dense}]
[[features.categorical]]
name = "citizenship"
buckets = 8
[[features.categorical]]
name = "fill_inc_questionnaire_for_veterans_admin"
buckets = 8
{extra_cat}
[ple]
levels = 1
shared_experts = 1
specific_experts = 0
expert_hidden = [2]
[[tasks]]
name = "income"
[[tasks]]
name = "{task}"
"#
        );
        Config::from_toml_str(&text).expect("test config")
    }

    #[test]
    fn parses_columns_and_labels() {
        let c = config("", "", "never_married");
        let d = parse(&c, &format!("{LINE_A}\n{LINE_B}\n\n"), Path::new("x")).expect("parse");
        assert_eq!(d.len(), 2);
        assert_eq!(d.labels, vec![0.0, 0.0, 1.0, 1.0]);
        assert_eq!(d.batch.dense, vec![38.0, 12.0, 44.0, 26.0]);
        assert_eq!(
            d.batch.categorical["citizenship"],
            vec![
                feature_id("Foreign born- Not a citizen of U S"),
                feature_id("Native- Born in the United States")
            ]
        );
        assert_eq!(
            d.batch.categorical["fill_inc_questionnaire_for_veterans_admin"],
            vec![feature_id("Not in universe"), feature_id("Yes")]
        );
    }

    #[test]
    fn unknown_feature_and_task_are_named() {
        let c = config(", \"shoe_size\"", "", "never_married");
        let e = parse(&c, LINE_A, Path::new("x")).expect_err("unknown dense");
        assert!(e.to_string().contains("shoe_size"), "{e}");
        let c = config(
            "",
            "[[features.categorical]]\nname = \"marital_stat\"\nbuckets = 4\n",
            "never_married",
        );
        let e = parse(&c, LINE_A, Path::new("x")).expect_err("label leak");
        assert!(e.to_string().contains("marital_stat"), "{e}");
        let c = config("", "", "likes_cats");
        let e = parse(&c, LINE_A, Path::new("x")).expect_err("unknown task");
        assert!(e.to_string().contains("likes_cats"), "{e}");
    }

    #[test]
    fn malformed_lines_name_line_and_column() {
        let c = config("", "", "never_married");
        let short = LINE_A.rsplit_once(',').map(|(a, _)| a).unwrap_or(LINE_A);
        let e = parse(&c, &format!("{LINE_A}\n{short}\n"), Path::new("f.gz")).expect_err("short");
        let s = e.to_string();
        assert!(s.contains("line 2") && s.contains("41"), "{s}");
        let bad = LINE_B.replacen("44,", "forty-four,", 1);
        let e = parse(&c, &format!("{LINE_A}\n{bad}\n"), Path::new("f.gz")).expect_err("nan");
        let s = e.to_string();
        assert!(
            s.contains("line 2") && s.contains("column 0") && s.contains("forty-four"),
            "{s}"
        );
    }

    #[test]
    fn split_is_disjoint_complete_and_seeded() {
        let c = config("", "", "never_married");
        let text: String = (0..50)
            .map(|i| {
                let line = if i % 3 == 0 { LINE_B } else { LINE_A };
                let rest = line.split_once(',').map(|(_, r)| r).unwrap_or(line);
                format!("{i},{rest}\n")
            })
            .collect();
        let all = parse(&c, &text, Path::new("x")).expect("parse");
        let s = split(&c, &all).expect("split");
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (30, 10, 10));
        let mut ages: Vec<f32> = [&s.train, &s.val, &s.test]
            .iter()
            .flat_map(|d| d.batch.dense.chunks(2).map(|r| r[0]).collect::<Vec<_>>())
            .collect();
        ages.sort_by(f32::total_cmp);
        ages.dedup();
        assert_eq!(ages.len(), 50);
        assert_eq!(split(&c, &all).expect("again"), s);
        let mut c2 = c.clone();
        c2.data.split_seed += 1;
        assert_ne!(split(&c2, &all).expect("other seed").test, s.test);
    }
}
