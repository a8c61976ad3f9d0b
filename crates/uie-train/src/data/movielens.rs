//! MovieLens ml-latest-small reader: Protocol B of `docs/evaluation.md`.
//!
//! `data.path` is the folder of `ratings.csv` (`userId,movieId,rating,timestamp`) and `movies.csv`
//! (`movieId,title,genres`, titles quoted when they contain commas, `""` inside quotes is a quote).
//!
//! **Samples.** Rating events are processed in `(timestamp, userId, movieId)` order. Each is a
//! positive row (`watch` = 1, `like` = 1 iff rating ≥ 4) followed by one sampled negative row
//! (`watch` = `like` = 0) at the same timestamp: a movie of `movies.csv` drawn with weight
//! "ratings of the movie strictly before t, plus 1" (a Fenwick tree, O(log M) per draw) and redrawn
//! while the user has rated it at any time ≤ t. The draws come from one [`crate::rng::SeedRng`] seeded with
//! `data.split_seed`, so the whole preparation is deterministic for that seed.
//!
//! **Split.** Position `e` of an event in that order decides its split: the first
//! `N − round(val·N) − round(test·N)` events train, the next `round(val·N)` validate, the last
//! `round(test·N)` test (so every train time ≤ every val time ≤ every test time; events sharing
//! the boundary timestamp may fall on both sides, which leaks nothing because features only see
//! strictly earlier timestamps). A negative goes with its positive. Rows keep event order.
//!
//! **Features**, all from events with a timestamp strictly before the sample's (whichever split
//! they fell in): `hist_items` (the user's last `max_len` rated movies, oldest first, right-padded
//! with 0), `user_id`, `user_activity` ([`super::cohort`] of the past count), `user_top_genre` (most
//! frequent genre of the past rated movies, ties to the alphabetically first, `"none"` without
//! one; `(no genres listed)` is not a genre), `user_log_count` = ln(1 + past count),
//! `user_like_rate` = past likes / past count (0 without a past); item side `movie_id`, `genres`
//! (the whole pipe-joined string), `release_year` (the trailing `(YYYY)` of the title, else
//! `"unknown"`) and `item_log_pop` = ln(1 + ratings of the movie strictly before t). String-valued
//! fields become ids with [`feature_id`]; `user_id` and `movie_id` are the raw ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::RngExt;
use uie_model::hashing::feature_id;
use uie_model::{Config, History, RawBatch};

use super::census::{collisions, data_path};
use super::{cohort, Dataset, Splits, COHORTS};
use crate::error::TrainError;
use crate::rng::{self, SeedRng};

/// The ratings file inside `data.path`.
pub const RATINGS_FILE: &str = "ratings.csv";
/// The movies file inside `data.path`.
pub const MOVIES_FILE: &str = "movies.csv";
/// The tasks this reader can label.
pub const TASKS: [&str; 2] = ["watch", "like"];
/// The categorical features this reader produces.
pub const CATEGORICAL: [&str; 6] = [
    "user_id",
    "user_activity",
    "user_top_genre",
    "movie_id",
    "genres",
    "release_year",
];
/// The dense features this reader produces.
pub const DENSE: [&str; 3] = ["user_log_count", "user_like_rate", "item_log_pop"];
/// The only item field the behaviour sequence can hold.
pub const SEQUENCE_ITEM_FIELD: &str = "movie_id";
/// The genres value of movies without a genre; never counted as a user's top genre.
pub const NO_GENRES: &str = "(no genres listed)";
/// A rating at or above this is a `like`.
pub const LIKE_THRESHOLD: f32 = 4.0;
/// Rejected negative draws after which the draw falls back to an exact scan of unrated movies.
const MAX_REJECTIONS: usize = 1000;

/// One line of `movies.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    /// `movieId`.
    pub id: i64,
    /// `title`, unquoted.
    pub title: String,
    /// `genres`, the pipe-joined string as in the file.
    pub genres: String,
}

/// One line of `ratings.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// `userId`.
    pub user: i64,
    /// `movieId`.
    pub movie: i64,
    /// `rating` (0.5 to 5 stars).
    pub rating: f32,
    /// `timestamp` (Unix seconds).
    pub timestamp: i64,
}

/// The prepared data: the splits plus, per split and row, what the tests and reports need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prepared {
    /// Train / validation / test rows.
    pub splits: Splits,
    /// Per split (train, val, test), the timestamp of every row.
    pub timestamps: [Vec<i64>; 3],
    /// Per split, whether each row is a positive (rated) or a sampled negative.
    pub positive: [Vec<bool>; 3],
    /// Negative draws rejected because the user had rated the movie by then.
    pub rejected_draws: u64,
}

/// The release year in a title's trailing `(YYYY)`, if any.
pub fn release_year(title: &str) -> Option<&str> {
    let t = title.trim_end().strip_suffix(')')?;
    let (head, year) = t.split_at(t.len().checked_sub(4)?);
    (head.ends_with('(') && year.bytes().all(|b| b.is_ascii_digit())).then_some(year)
}

/// Splits one CSV line into fields (RFC 4180 quoting, no embedded newlines). On error returns the
/// 0-based column and a message.
pub fn split_csv_line(line: &str) -> Result<Vec<String>, (usize, String)> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut at_field_start = true;
    loop {
        if at_field_start && chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err((fields.len(), "unterminated quoted field".to_string()));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    return Ok(fields);
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    at_field_start = true;
                    continue;
                }
                Some(c) => {
                    return Err((
                        fields.len(),
                        format!("unexpected {c:?} after a closing quote"),
                    ));
                }
            }
        }
        at_field_start = false;
        match chars.next() {
            None => {
                fields.push(std::mem::take(&mut field));
                return Ok(fields);
            }
            Some(',') => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            Some('"') => {
                return Err((fields.len(), "quote inside an unquoted field".to_string()));
            }
            Some(c) => field.push(c),
        }
    }
}

fn data_error(path: &Path, line: usize, column: usize, message: String) -> TrainError {
    TrainError::Data {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// Data lines of a CSV text with their 1-based line numbers, after checking the header.
fn csv_records<'a>(
    text: &'a str,
    path: &'a Path,
    header: &'a [&'a str],
) -> Result<impl Iterator<Item = Result<(usize, Vec<String>), TrainError>> + 'a, TrainError> {
    let mut lines = text.lines().enumerate();
    let first = lines
        .next()
        .map(|(_, l)| l.trim_start_matches('\u{feff}'))
        .unwrap_or("");
    let got = split_csv_line(first).map_err(|(c, m)| data_error(path, 1, c, m))?;
    if got.len() != header.len() || got.iter().zip(header).any(|(g, h)| g.trim() != *h) {
        return Err(data_error(
            path,
            1,
            0,
            format!(
                "expected the header {:?}, found {first:?}",
                header.join(",")
            ),
        ));
    }
    let n_cols = header.len();
    Ok(lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, l)| {
            let line = i + 1;
            let fields = split_csv_line(l).map_err(|(c, m)| data_error(path, line, c, m))?;
            if fields.len() != n_cols {
                return Err(data_error(
                    path,
                    line,
                    fields.len().min(n_cols),
                    format!("expected {n_cols} columns, found {}", fields.len()),
                ));
            }
            Ok((line, fields))
        }))
}

fn parse_field<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    column: usize,
    name: &str,
    value: &str,
) -> Result<T, TrainError> {
    value.trim().parse().map_err(|_| {
        data_error(
            path,
            line,
            column,
            format!("{name} {value:?} is not a valid number"),
        )
    })
}

/// Parses `movies.csv` text; `path` only names the source in errors.
pub fn parse_movies(text: &str, path: &Path) -> Result<Vec<Movie>, TrainError> {
    let mut movies = Vec::new();
    let mut seen = BTreeSet::new();
    for record in csv_records(text, path, &["movieId", "title", "genres"])? {
        let (line, f) = record?;
        let id: i64 = parse_field(path, line, 0, "movieId", &f[0])?;
        if !seen.insert(id) {
            return Err(data_error(path, line, 0, format!("duplicate movieId {id}")));
        }
        movies.push(Movie {
            id,
            title: f[1].clone(),
            genres: f[2].trim().to_string(),
        });
    }
    Ok(movies)
}

/// Parses `ratings.csv` text; `path` only names the source in errors.
pub fn parse_ratings(text: &str, path: &Path) -> Result<Vec<Rating>, TrainError> {
    let mut ratings = Vec::new();
    for record in csv_records(text, path, &["userId", "movieId", "rating", "timestamp"])? {
        let (line, f) = record?;
        let rating: f32 = parse_field(path, line, 2, "rating", &f[2])?;
        if !(rating.is_finite() && (0.0..=5.0).contains(&rating)) {
            return Err(data_error(
                path,
                line,
                2,
                format!("rating {rating} is outside [0, 5]"),
            ));
        }
        ratings.push(Rating {
            user: parse_field(path, line, 0, "userId", &f[0])?,
            movie: parse_field(path, line, 1, "movieId", &f[1])?,
            rating,
            timestamp: parse_field(path, line, 3, "timestamp", &f[3])?,
        });
    }
    Ok(ratings)
}

/// Reads `movies.csv` and `ratings.csv` from the folder named by `data.path`.
pub fn read(config: &Config, data_root: &Path) -> Result<(Vec<Movie>, Vec<Rating>), TrainError> {
    let dir = data_path(config, data_root);
    let read_text = |name: &str| -> Result<(PathBuf, String), TrainError> {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
        Ok((p, text))
    };
    let (movies_path, movies_text) = read_text(MOVIES_FILE)?;
    let movies = parse_movies(&movies_text, &movies_path)?;
    let (ratings_path, ratings_text) = read_text(RATINGS_FILE)?;
    let ratings = parse_ratings(&ratings_text, &ratings_path)?;
    if ratings.is_empty() {
        return Err(TrainError::EmptyData(format!(
            "{}: no ratings below the header",
            ratings_path.display()
        )));
    }
    // Every rated movie must be known, to have item fields: name the first offending line.
    let known: BTreeSet<i64> = movies.iter().map(|m| m.id).collect();
    if let Some(i) = ratings.iter().position(|r| !known.contains(&r.movie)) {
        let line = ratings_text
            .lines()
            .enumerate()
            .skip(1)
            .filter(|(_, l)| !l.trim().is_empty())
            .nth(i)
            .map_or(0, |(n, _)| n + 1);
        return Err(data_error(
            &ratings_path,
            line,
            1,
            format!(
                "movieId {} is not in {}",
                ratings[i].movie,
                movies_path.display()
            ),
        ));
    }
    Ok((movies, ratings))
}

#[derive(Clone, Copy)]
enum Cat {
    UserId,
    UserActivity,
    UserTopGenre,
    MovieId,
    Genres,
    ReleaseYear,
}

#[derive(Clone, Copy)]
enum Dense {
    UserLogCount,
    UserLikeRate,
    ItemLogPop,
}

#[derive(Clone, Copy)]
enum TaskSource {
    Watch,
    Like,
}

/// What a config asks of this reader, resolved once.
struct Plan {
    cats: Vec<(String, Cat)>,
    dense: Vec<Dense>,
    tasks: Vec<TaskSource>,
    max_len: Option<usize>,
}

fn unknown_feature(name: &str, message: String) -> TrainError {
    TrainError::UnknownFeature {
        name: name.to_string(),
        message,
    }
}

impl Plan {
    fn new(config: &Config) -> Result<Plan, TrainError> {
        let cats = config
            .features
            .categorical
            .iter()
            .map(|f| {
                let c = match f.name.as_str() {
                    "user_id" => Cat::UserId,
                    "user_activity" => Cat::UserActivity,
                    "user_top_genre" => Cat::UserTopGenre,
                    "movie_id" => Cat::MovieId,
                    "genres" => Cat::Genres,
                    "release_year" => Cat::ReleaseYear,
                    other => {
                        return Err(unknown_feature(
                            other,
                            format!(
                                "not a categorical MovieLens feature (known: {})",
                                CATEGORICAL.join(", ")
                            ),
                        ))
                    }
                };
                Ok((f.name.clone(), c))
            })
            .collect::<Result<_, TrainError>>()?;
        let dense = config
            .features
            .dense
            .iter()
            .map(|name| match name.as_str() {
                "user_log_count" => Ok(Dense::UserLogCount),
                "user_like_rate" => Ok(Dense::UserLikeRate),
                "item_log_pop" => Ok(Dense::ItemLogPop),
                other => Err(unknown_feature(
                    other,
                    format!(
                        "not a dense MovieLens feature (known: {})",
                        DENSE.join(", ")
                    ),
                )),
            })
            .collect::<Result<_, TrainError>>()?;
        let tasks = config
            .tasks
            .iter()
            .map(|t| match t.name.as_str() {
                "watch" => Ok(TaskSource::Watch),
                "like" => Ok(TaskSource::Like),
                other => Err(TrainError::UnknownTask {
                    name: other.to_string(),
                    known: TASKS.join(", "),
                }),
            })
            .collect::<Result<_, TrainError>>()?;
        let max_len = match &config.features.sequence {
            None => None,
            Some(s) if s.item_field == SEQUENCE_ITEM_FIELD => Some(s.max_len),
            Some(s) => {
                return Err(unknown_feature(
                    &s.item_field,
                    format!(
                        "the MovieLens behaviour sequence holds movie ids: \
                         features.sequence.item_field must be {SEQUENCE_ITEM_FIELD:?}"
                    ),
                ))
            }
        };
        Ok(Plan {
            cats,
            dense,
            tasks,
            max_len,
        })
    }
}

/// A Fenwick (binary indexed) tree of non-negative integer weights with weighted sampling.
struct Fenwick {
    tree: Vec<u64>,
    total: u64,
}

impl Fenwick {
    fn with_ones(n: usize) -> Fenwick {
        let mut tree = vec![0u64; n + 1];
        for i in 1..=n {
            tree[i] += 1;
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                tree[parent] += tree[i];
            }
        }
        Fenwick {
            tree,
            total: n as u64,
        }
    }

    fn add(&mut self, index: usize, delta: u64) {
        let mut i = index + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
        self.total += delta;
    }

    /// The index whose cumulative weight range contains `r` (`r < total`).
    fn find(&self, mut r: u64) -> usize {
        let n = self.tree.len() - 1;
        let mut pos = 0usize;
        let mut step = n.checked_ilog2().map_or(0, |b| 1usize << b);
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        pos.min(n.saturating_sub(1))
    }
}

/// Row storage of one split while building.
#[derive(Default)]
struct Builder {
    n: usize,
    cats: Vec<Vec<i64>>,
    dense: Vec<f32>,
    hist_items: Vec<i64>,
    hist_len: Vec<i64>,
    labels: Vec<f32>,
    users: Vec<i64>,
    past_counts: Vec<u32>,
    timestamps: Vec<i64>,
    positive: Vec<bool>,
}

/// The user-side inputs of one event, shared by its positive and its negative.
struct UserSide<'a> {
    user: i64,
    activity_id: i64,
    top_genre_id: i64,
    past_count: u32,
    log_count: f32,
    like_rate: f32,
    history: &'a [i64],
}

/// Per-movie values computed once.
struct MovieInfo {
    id: i64,
    genres_id: i64,
    year_id: i64,
    genre_idx: Vec<usize>,
}

impl Builder {
    fn push(
        &mut self,
        plan: &Plan,
        u: &UserSide<'_>,
        movie: &MovieInfo,
        movie_past: u64,
        labels: (f32, f32),
        timestamp: i64,
    ) {
        if self.cats.len() != plan.cats.len() {
            self.cats = vec![Vec::new(); plan.cats.len()];
        }
        for (k, (_, c)) in plan.cats.iter().enumerate() {
            self.cats[k].push(match c {
                Cat::UserId => u.user,
                Cat::UserActivity => u.activity_id,
                Cat::UserTopGenre => u.top_genre_id,
                Cat::MovieId => movie.id,
                Cat::Genres => movie.genres_id,
                Cat::ReleaseYear => movie.year_id,
            });
        }
        for d in &plan.dense {
            self.dense.push(match d {
                Dense::UserLogCount => u.log_count,
                Dense::UserLikeRate => u.like_rate,
                Dense::ItemLogPop => (movie_past as f32).ln_1p(),
            });
        }
        if let Some(width) = plan.max_len {
            let start = u.history.len().saturating_sub(width);
            let recent = &u.history[start..];
            self.hist_items.extend_from_slice(recent);
            self.hist_items
                .extend(std::iter::repeat_n(0, width - recent.len()));
            self.hist_len.push(recent.len() as i64);
        }
        for t in &plan.tasks {
            self.labels.push(match t {
                TaskSource::Watch => labels.0,
                TaskSource::Like => labels.1,
            });
        }
        self.users.push(u.user);
        self.past_counts.push(u.past_count);
        self.timestamps.push(timestamp);
        self.positive.push(labels.0 > 0.5);
        self.n += 1;
    }

    fn finish(self, plan: &Plan) -> (Dataset, Vec<i64>, Vec<bool>) {
        let n = self.n;
        let mut cats = self.cats;
        if cats.len() != plan.cats.len() {
            cats = vec![Vec::new(); plan.cats.len()];
        }
        let categorical = plan
            .cats
            .iter()
            .map(|(name, _)| name.clone())
            .zip(cats)
            .collect();
        let history = plan.max_len.map(|width| History {
            width,
            items: self.hist_items,
            len: self.hist_len,
        });
        (
            Dataset {
                batch: RawBatch {
                    n,
                    categorical,
                    dense: self.dense,
                    history,
                },
                labels: self.labels,
                users: self.users,
                past_counts: self.past_counts,
            },
            self.timestamps,
            self.positive,
        )
    }
}

/// Per-user state: everything strictly before the timestamp being processed.
#[derive(Default, Clone)]
struct UserState {
    history: Vec<i64>,
    likes: u32,
    genre_counts: Vec<u32>,
    /// Bitset over movie indices of movies rated at any time ≤ the current timestamp.
    rated: Vec<u64>,
}

impl UserState {
    fn has_rated(&self, movie: usize) -> bool {
        self.rated
            .get(movie / 64)
            .is_some_and(|w| w & (1u64 << (movie % 64)) != 0)
    }
}

/// Builds the Protocol B samples, features and time split from parsed files.
pub fn build(
    config: &Config,
    movies: &[Movie],
    ratings: &[Rating],
) -> Result<Prepared, TrainError> {
    let plan = Plan::new(config)?;
    if ratings.is_empty() {
        return Err(TrainError::EmptyData("no ratings".into()));
    }

    // Movies, indexed densely in file order; genres indexed alphabetically.
    let genre_names: Vec<String> = movies
        .iter()
        .flat_map(|m| m.genres.split('|'))
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != NO_GENRES)
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let genre_ids: Vec<i64> = genre_names.iter().map(|g| feature_id(g)).collect();
    let none_id = feature_id("none");
    let unknown_year_id = feature_id("unknown");
    let infos: Vec<MovieInfo> = movies
        .iter()
        .map(|m| MovieInfo {
            id: m.id,
            genres_id: feature_id(&m.genres),
            year_id: release_year(&m.title).map_or(unknown_year_id, feature_id),
            genre_idx: m
                .genres
                .split('|')
                .filter_map(|g| {
                    genre_names
                        .binary_search_by(|n| n.as_str().cmp(g.trim()))
                        .ok()
                })
                .collect(),
        })
        .collect();
    let movie_index: HashMap<i64, usize> =
        movies.iter().enumerate().map(|(i, m)| (m.id, i)).collect();

    // Events in (timestamp, userId, movieId) order, with dense movie and user indices.
    let mut events: Vec<(Rating, usize)> = ratings
        .iter()
        .map(|r| {
            movie_index.get(&r.movie).map(|&m| (*r, m)).ok_or_else(|| {
                TrainError::EmptyData(format!("movieId {} is not in movies.csv", r.movie))
            })
        })
        .collect::<Result<_, _>>()?;
    events.sort_by(|(a, _), (b, _)| {
        (a.timestamp, a.user, a.movie).cmp(&(b.timestamp, b.user, b.movie))
    });
    let mut user_index: HashMap<i64, usize> = HashMap::new();
    for (r, _) in &events {
        let next = user_index.len();
        user_index.entry(r.user).or_insert(next);
    }

    // Split sizes by position.
    let n = events.len();
    let n_test = ((n as f64) * config.data.test_fraction).round() as usize;
    let n_val = ((n as f64) * config.data.val_fraction).round() as usize;
    if n_test == 0 || n_val == 0 || n_test + n_val >= n {
        return Err(TrainError::EmptyData(format!(
            "{n} rating events cannot be split into non-empty train, validation ({n_val}) and \
             test ({n_test}) sets"
        )));
    }
    let n_train = n - n_val - n_test;
    let split_of = |e: usize| usize::from(e >= n_train) + usize::from(e >= n_train + n_val);

    let words = movies.len().div_ceil(64);
    let mut users = vec![
        UserState {
            genre_counts: vec![0; genre_names.len()],
            rated: vec![0; words],
            ..UserState::default()
        };
        user_index.len()
    ];
    let mut movie_past = vec![0u64; movies.len()];
    let mut popularity = Fenwick::with_ones(movies.len());
    let mut rng = rng::seeded(config.data.split_seed);
    let mut builders: [Builder; 3] = Default::default();
    let mut rejected_draws = 0u64;
    let mut user_train_counts: BTreeMap<i64, u64> = BTreeMap::new();

    let mut start = 0;
    while start < n {
        let t = events[start].0.timestamp;
        let end = start
            + events[start..]
                .iter()
                .take_while(|(r, _)| r.timestamp == t)
                .count();
        let group = &events[start..end];
        let uidx = |r: &Rating| user_index.get(&r.user).copied().unwrap_or(0);
        // "Rated by then" includes this timestamp.
        for (r, m) in group {
            users[uidx(r)].rated[m / 64] |= 1u64 << (m % 64);
        }
        for (k, (r, m)) in group.iter().enumerate() {
            let state = &users[uidx(r)];
            let past = state.history.len();
            let top_genre_id = state
                .genre_counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .max_by(|(ia, ca), (ib, cb)| ca.cmp(cb).then(ib.cmp(ia)))
                .map_or(none_id, |(g, _)| genre_ids[g]);
            let past_u32 = u32::try_from(past).unwrap_or(u32::MAX);
            let side = UserSide {
                user: r.user,
                activity_id: feature_id(cohort(past_u32)),
                top_genre_id,
                past_count: past_u32,
                log_count: (past as f32).ln_1p(),
                like_rate: if past == 0 {
                    0.0
                } else {
                    state.likes as f32 / past as f32
                },
                history: &state.history,
            };
            let negative = draw_negative(
                &popularity,
                &movie_past,
                state,
                &mut rng,
                &mut rejected_draws,
            )
            .ok_or_else(|| {
                TrainError::EmptyData(format!(
                    "user {} has rated every movie by {t}: no negative to sample",
                    r.user
                ))
            })?;
            let split = split_of(start + k);
            let like = if r.rating >= LIKE_THRESHOLD { 1.0 } else { 0.0 };
            let b = &mut builders[split];
            b.push(&plan, &side, &infos[*m], movie_past[*m], (1.0, like), t);
            b.push(
                &plan,
                &side,
                &infos[negative],
                movie_past[negative],
                (0.0, 0.0),
                t,
            );
            if split == 0 {
                *user_train_counts.entry(r.user).or_default() += 1;
            }
        }
        // Now the group becomes the past.
        for (r, m) in group {
            let state = &mut users[uidx(r)];
            state.history.push(infos[*m].id);
            if r.rating >= LIKE_THRESHOLD {
                state.likes += 1;
            }
            for &g in &infos[*m].genre_idx {
                state.genre_counts[g] += 1;
            }
            movie_past[*m] += 1;
            popularity.add(*m, 1);
        }
        start = end;
    }

    let [b_train, b_val, b_test] = builders;
    let (train, t_train, p_train) = b_train.finish(&plan);
    let (val, t_val, p_val) = b_val.finish(&plan);
    let (test, t_test, p_test) = b_test.finish(&plan);
    let collisions = collisions(config, &train.batch);
    Ok(Prepared {
        splits: Splits {
            train,
            val,
            test,
            collisions,
            user_train_counts,
        },
        timestamps: [t_train, t_val, t_test],
        positive: [p_train, p_val, p_test],
        rejected_draws,
    })
}

/// Draws a movie the user has not rated by now, by popularity; `None` if there is none.
fn draw_negative(
    popularity: &Fenwick,
    movie_past: &[u64],
    user: &UserState,
    rng: &mut SeedRng,
    rejected: &mut u64,
) -> Option<usize> {
    for _ in 0..MAX_REJECTIONS {
        if popularity.total == 0 {
            break;
        }
        let m = popularity.find(rng.random_range(0..popularity.total));
        if !user.has_rated(m) {
            return Some(m);
        }
        *rejected += 1;
    }
    // Exact fallback: the same distribution restricted to unrated movies.
    let total: u64 = (0..movie_past.len())
        .filter(|&m| !user.has_rated(m))
        .map(|m| movie_past[m] + 1)
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.random_range(0..total);
    for (m, &c) in movie_past.iter().enumerate() {
        if user.has_rated(m) {
            continue;
        }
        if r < c + 1 {
            return Some(m);
        }
        r -= c + 1;
    }
    None
}

/// Reads the folder named by the config and prepares Protocol B's splits.
pub fn load(config: &Config, data_root: &Path) -> Result<Splits, TrainError> {
    let (movies, ratings) = read(config, data_root)?;
    Ok(build(config, &movies, &ratings)?.splits)
}

/// Counts of one split for [`PrepareReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSummary {
    /// `train`, `val` or `test`.
    pub name: &'static str,
    /// Positive (rated) rows.
    pub positives: usize,
    /// Sampled negative rows.
    pub negatives: usize,
    /// Mean label per task, in config order.
    pub label_rates: Vec<(String, f64)>,
    /// First and last timestamp of the split.
    pub time_range: (i64, i64),
}

/// What `uie-train prepare` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    /// Rating events read.
    pub events: usize,
    /// Movies in `movies.csv`.
    pub movies: usize,
    /// Train, val and test.
    pub splits: Vec<SplitSummary>,
    /// Test rows per cohort, in [`COHORTS`] order.
    pub test_cohorts: Vec<(&'static str, usize)>,
    /// Distinct users with a test row.
    pub test_users: usize,
    /// Of those, users without a training positive.
    pub new_test_users: usize,
    /// Negative draws rejected because the user had already rated the movie.
    pub rejected_draws: u64,
    /// Wall time to read and prepare, in seconds.
    pub seconds: f64,
}

impl PrepareReport {
    /// Summarises prepared data.
    pub fn new(
        config: &Config,
        prepared: &Prepared,
        events: usize,
        movies: usize,
        seconds: f64,
    ) -> PrepareReport {
        let s = &prepared.splits;
        let tasks = config.task_names();
        let splits = [("train", &s.train), ("val", &s.val), ("test", &s.test)]
            .into_iter()
            .enumerate()
            .map(|(i, (name, d))| {
                let positives = prepared.positive[i].iter().filter(|&&p| p).count();
                let t = d.n_tasks().max(1);
                SplitSummary {
                    name,
                    positives,
                    negatives: d.len() - positives,
                    label_rates: tasks
                        .iter()
                        .enumerate()
                        .map(|(k, name)| {
                            let sum: f64 = d
                                .labels
                                .iter()
                                .skip(k)
                                .step_by(t)
                                .map(|&y| f64::from(y))
                                .sum();
                            (name.to_string(), sum / d.len().max(1) as f64)
                        })
                        .collect(),
                    time_range: (
                        prepared.timestamps[i].first().copied().unwrap_or(0),
                        prepared.timestamps[i].last().copied().unwrap_or(0),
                    ),
                }
            })
            .collect();
        let counts = s.test.cohort_counts();
        let test_users: BTreeSet<i64> = s.test.users.iter().copied().collect();
        let new_test_users = test_users
            .iter()
            .filter(|u| !s.user_train_counts.contains_key(u))
            .count();
        PrepareReport {
            events,
            movies,
            splits,
            test_cohorts: COHORTS.iter().copied().zip(counts).collect(),
            test_users: test_users.len(),
            new_test_users,
            rejected_draws: prepared.rejected_draws,
            seconds,
        }
    }
}

impl fmt::Display for PrepareReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} rating events, {} movies; one sampled negative per event ({} rejected draws)",
            self.events, self.movies, self.rejected_draws
        )?;
        for s in &self.splits {
            let rates: Vec<String> = s
                .label_rates
                .iter()
                .map(|(t, r)| format!("{t} {r:.4}"))
                .collect();
            writeln!(
                f,
                "{:<5} {:>7} rows ({} positives, {} negatives); label rates: {}; time {}..{}",
                s.name,
                s.positives + s.negatives,
                s.positives,
                s.negatives,
                rates.join(", "),
                s.time_range.0,
                s.time_range.1
            )?;
        }
        let cohorts: Vec<String> = self
            .test_cohorts
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        writeln!(f, "test rows per cohort: {}", cohorts.join(", "))?;
        writeln!(
            f,
            "test users: {} distinct, {} new (no training positive)",
            self.test_users, self.new_test_users
        )?;
        write!(f, "prepared in {:.3} s", self.seconds)
    }
}

/// Reads and prepares the data named by the config and summarises it (`uie-train prepare`).
pub fn prepare(config: &Config, data_root: &Path) -> Result<(Prepared, PrepareReport), TrainError> {
    let started = Instant::now();
    let (movies, ratings) = read(config, data_root)?;
    let prepared = build(config, &movies, &ratings)?;
    let seconds = started.elapsed().as_secs_f64();
    let report = PrepareReport::new(config, &prepared, ratings.len(), movies.len(), seconds);
    Ok((prepared, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn config_text(cats: &str, dense: &str, tasks: &str, sequence: &str) -> String {
        let cats: String = cats
            .split_whitespace()
            .map(|c| {
                let (name, group) = c.split_once(':').unwrap_or((c, "user"));
                format!("[[features.categorical]]\nname = \"{name}\"\ngroup = \"{group}\"\nbuckets = 64\n")
            })
            .collect();
        let tasks: String = tasks
            .split_whitespace()
            .map(|t| format!("[[tasks]]\nname = \"{t}\"\n"))
            .collect();
        format!(
            r#"
[model]
name = "t"
embed_dim = 2
[features]
dense = [{dense}]
{sequence}
{cats}
[ple]
levels = 1
shared_experts = 1
specific_experts = 0
expert_hidden = [2]
{tasks}
[data]
kind = "movielens"
path = "fixtures/datasets/movielens-latest-small"
val_fraction = 0.1
test_fraction = 0.2
"#
        )
    }

    const ALL_CATS: &str =
        "user_id user_activity user_top_genre movie_id:item genres:item release_year:item";
    const ALL_DENSE: &str = r#""user_log_count", "user_like_rate", "item_log_pop""#;
    const SEQ: &str = r#"sequence = { item_field = "movie_id", max_len = 50 }"#;

    fn full_config() -> Config {
        Config::from_toml_str(&config_text(ALL_CATS, ALL_DENSE, "watch like", SEQ))
            .expect("test config")
    }

    struct Real {
        config: Config,
        movies: Vec<Movie>,
        ratings: Vec<Rating>,
        prepared: Prepared,
    }

    fn real() -> &'static Real {
        static REAL: OnceLock<Real> = OnceLock::new();
        REAL.get_or_init(|| {
            let config = full_config();
            let (movies, ratings) = read(&config, &repo_root()).expect("read real files");
            let prepared = build(&config, &movies, &ratings).expect("build");
            Real {
                config,
                movies,
                ratings,
                prepared,
            }
        })
    }

    fn splits_of(p: &Prepared) -> [&Dataset; 3] {
        [&p.splits.train, &p.splits.val, &p.splits.test]
    }

    /// A few hundred rows per split, spread evenly.
    fn sample_rows(d: &Dataset) -> Vec<usize> {
        let step = (d.len() / 300).max(1);
        (0..d.len()).step_by(step).collect()
    }

    #[test]
    fn reads_the_real_files() {
        let r = real();
        assert_eq!(r.ratings.len(), 100_836);
        assert_eq!(r.movies.len(), 9_742);
        let total: usize = splits_of(&r.prepared).iter().map(|d| d.len()).sum();
        assert_eq!(total, 2 * 100_836);
        // A quoted title with a comma survives.
        assert!(r
            .movies
            .iter()
            .any(|m| m.title == "American President, The (1995)"));
    }

    #[test]
    fn no_leakage_history_and_profile_match_brute_force() {
        let r = real();
        let genres_of: HashMap<i64, &str> =
            r.movies.iter().map(|m| (m.id, m.genres.as_str())).collect();
        let mut by_user: HashMap<i64, Vec<&Rating>> = HashMap::new();
        for x in &r.ratings {
            by_user.entry(x.user).or_default().push(x);
        }
        for v in by_user.values_mut() {
            v.sort_by_key(|x| (x.timestamp, x.movie));
        }
        let time_of: HashMap<(i64, i64), i64> = r
            .ratings
            .iter()
            .map(|x| ((x.user, x.movie), x.timestamp))
            .collect();
        for (s, d) in splits_of(&r.prepared).into_iter().enumerate() {
            let h = d.batch.history.as_ref().expect("history");
            assert_eq!(h.width, 50);
            for row in sample_rows(d) {
                let t = r.prepared.timestamps[s][row];
                let user = d.users[row];
                let past: Vec<&Rating> = by_user[&user]
                    .iter()
                    .copied()
                    .filter(|x| x.timestamp < t)
                    .collect();
                // History: strictly before t, most recent 50, oldest first, zero padded.
                let len = usize::try_from(h.len[row]).expect("len");
                let items = &h.items[row * 50..(row + 1) * 50];
                let want: Vec<i64> = past.iter().rev().take(50).rev().map(|x| x.movie).collect();
                assert_eq!(&items[..len], &want[..], "row {row} of split {s}");
                assert!(items[len..].iter().all(|&i| i == 0));
                let mut last = i64::MIN;
                for &item in &items[..len] {
                    let ti = time_of[&(user, item)];
                    assert!(ti < t, "history item {item} at {ti} not before {t}");
                    assert!(ti >= last, "history not oldest first");
                    last = ti;
                }
                // Profile fields.
                assert_eq!(d.past_counts[row] as usize, past.len());
                let c = &d.batch.categorical;
                assert_eq!(c["user_id"][row], user);
                assert_eq!(
                    c["user_activity"][row],
                    feature_id(cohort(past.len() as u32))
                );
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for x in &past {
                    for g in genres_of[&x.movie].split('|') {
                        if g != NO_GENRES {
                            *counts.entry(g).or_default() += 1;
                        }
                    }
                }
                let best = counts.values().copied().max();
                let top = counts
                    .iter()
                    .find(|(_, &n)| Some(n) == best)
                    .map_or("none", |(g, _)| *g);
                assert_eq!(c["user_top_genre"][row], feature_id(top), "row {row}");
                let dense = &d.batch.dense[row * 3..row * 3 + 3];
                let likes = past.iter().filter(|x| x.rating >= 4.0).count();
                assert!((dense[0] - (past.len() as f32).ln_1p()).abs() < 1e-6);
                let rate = if past.is_empty() {
                    0.0
                } else {
                    likes as f32 / past.len() as f32
                };
                assert!((dense[1] - rate).abs() < 1e-6);
                let movie = c["movie_id"][row];
                let pop = r
                    .ratings
                    .iter()
                    .filter(|x| x.movie == movie && x.timestamp < t)
                    .count();
                assert!((dense[2] - (pop as f32).ln_1p()).abs() < 1e-6);
                let m = r.movies.iter().find(|m| m.id == movie).expect("movie");
                assert_eq!(c["genres"][row], feature_id(&m.genres));
                assert_eq!(
                    c["release_year"][row],
                    feature_id(release_year(&m.title).unwrap_or("unknown"))
                );
            }
        }
    }

    #[test]
    fn negatives_are_unrated_by_then_and_at_the_same_time() {
        let r = real();
        let first_time: HashMap<(i64, i64), i64> =
            r.ratings.iter().fold(HashMap::new(), |mut m, x| {
                let e = m.entry((x.user, x.movie)).or_insert(x.timestamp);
                *e = (*e).min(x.timestamp);
                m
            });
        let known: BTreeSet<i64> = r.movies.iter().map(|m| m.id).collect();
        for (s, d) in splits_of(&r.prepared).into_iter().enumerate() {
            let pos = &r.prepared.positive[s];
            let times = &r.prepared.timestamps[s];
            assert_eq!(pos.len(), d.len());
            for row in 0..d.len() {
                // Rows alternate positive, negative.
                assert_eq!(pos[row], row % 2 == 0);
                let watch = d.labels[row * 2];
                let like = d.labels[row * 2 + 1];
                if pos[row] {
                    assert_eq!(watch, 1.0);
                    continue;
                }
                assert_eq!((watch, like), (0.0, 0.0));
                assert_eq!(times[row], times[row - 1]);
                assert_eq!(d.users[row], d.users[row - 1]);
                let movie = d.batch.categorical["movie_id"][row];
                assert!(known.contains(&movie));
                if let Some(&t0) = first_time.get(&(d.users[row], movie)) {
                    assert!(
                        t0 > times[row],
                        "negative {movie} rated at {t0} ≤ {}",
                        times[row]
                    );
                }
            }
        }
    }

    #[test]
    fn deterministic_for_the_seed() {
        let r = real();
        let again = build(&r.config, &r.movies, &r.ratings).expect("again");
        assert_eq!(again, r.prepared);
        let mut other = r.config.clone();
        other.data.split_seed += 1;
        let o = build(&other, &r.movies, &r.ratings).expect("other seed");
        let mut negatives_differ = false;
        for (a, b) in splits_of(&r.prepared).into_iter().zip(splits_of(&o)) {
            assert_eq!(a.len(), b.len());
            let (ma, mb) = (
                &a.batch.categorical["movie_id"],
                &b.batch.categorical["movie_id"],
            );
            for row in 0..a.len() {
                if row % 2 == 0 {
                    assert_eq!(ma[row], mb[row]);
                    assert_eq!(a.users[row], b.users[row]);
                } else if ma[row] != mb[row] {
                    negatives_differ = true;
                }
            }
        }
        assert!(negatives_differ);
        assert_eq!(
            r.prepared.splits.user_train_counts,
            o.splits.user_train_counts
        );
    }

    #[test]
    fn split_is_in_time_with_target_fractions() {
        let r = real();
        let [tr, va, te] = &r.prepared.timestamps;
        let max = |v: &Vec<i64>| v.iter().copied().max().expect("non-empty");
        let min = |v: &Vec<i64>| v.iter().copied().min().expect("non-empty");
        assert!(max(tr) <= min(va) && max(va) <= min(te));
        let n = r.ratings.len() as f64;
        let positives = |s: usize| r.prepared.positive[s].iter().filter(|&&p| p).count() as f64;
        assert!((positives(2) - 0.2 * n).abs() <= 1.0);
        assert!((positives(1) - 0.1 * n).abs() <= 1.0);
        assert!((positives(0) - 0.7 * n).abs() <= 1.0);
        // user_train_counts counts training positives only.
        let total: u64 = r.prepared.splits.user_train_counts.values().sum();
        assert_eq!(total as f64, positives(0));
    }

    #[test]
    fn test_cohorts_come_from_past_counts() {
        let r = real();
        let test = &r.prepared.splits.test;
        let h = test.batch.history.as_ref().expect("history");
        for row in 0..test.len() {
            let p = test.past_counts[row];
            assert_eq!(h.len[row], i64::from(p.min(50)));
            assert!(h.len[row] <= 50);
        }
        let counts = test.cohort_counts();
        assert_eq!(counts.iter().sum::<usize>(), test.len());
        let zero = test.past_counts.iter().filter(|&&p| p == 0).count();
        assert_eq!(counts[0], zero);
        let sparse = test
            .past_counts
            .iter()
            .filter(|&&p| (1..=20).contains(&p))
            .count();
        assert_eq!(counts[1] + counts[2], sparse);
    }

    fn write_files(dir: &Path, movies: &str, ratings: &str) {
        std::fs::write(dir.join(MOVIES_FILE), movies).expect("write movies");
        std::fs::write(dir.join(RATINGS_FILE), ratings).expect("write ratings");
    }

    fn tiny_config(dir: &Path, extra_cat: &str, tasks: &str) -> Config {
        let text = config_text(&format!("{ALL_CATS} {extra_cat}"), ALL_DENSE, tasks, SEQ)
            .replace(
                "fixtures/datasets/movielens-latest-small",
                &dir.display().to_string(),
            )
            .replace("max_len = 50", "max_len = 2");
        Config::from_toml_str(&text).expect("tiny config")
    }

    const TINY_MOVIES: &str = "movieId,title,genres\r\n\
        1,\"Foo, The (1999)\",Drama|Comedy\r\n\
        2,Bar (2001) ,Comedy\r\n\
        3,\"Say \"\"Hi\"\"\",Action\r\n\
        4,Qux (1980),Drama\r\n\
        5,Nog (1970),(no genres listed)\r\n";

    #[test]
    fn tiny_data_gives_the_expected_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        // User 1 rates 1 and 2 at t=10, then 4 at t=20; user 2 rates 5 at t=5 and 3 at t=30.
        let ratings = "userId,movieId,rating,timestamp\n1,2,3.5,10\n1,1,4.0,10\n\n2,5,5.0,5\n1,4,2.0,20\n2,3,1.0,30\n";
        write_files(dir.path(), TINY_MOVIES, ratings);
        let mut c = tiny_config(dir.path(), "", "watch like");
        c.data.val_fraction = 0.2;
        c.data.test_fraction = 0.2;
        let (movies, ratings) = read(&c, Path::new("/")).expect("read");
        assert_eq!(movies[0].title, "Foo, The (1999)");
        assert_eq!(movies[2].title, "Say \"Hi\"");
        let p = build(&c, &movies, &ratings).expect("build");
        let s = &p.splits;
        // Order: (5,2,5) (10,1,1) (10,1,2) | (20,1,4) | (30,2,3).
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (6, 2, 2));
        assert_eq!(p.timestamps[0], vec![5, 5, 10, 10, 10, 10]);
        assert_eq!(s.train.users, vec![2, 2, 1, 1, 1, 1]);
        assert_eq!(s.train.labels[..6], [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(s.train.labels[8..10], [1.0, 0.0]);
        // Movies 1 and 2 rated at the same time: neither sees the other.
        assert_eq!(s.train.past_counts, vec![0, 0, 0, 0, 0, 0]);
        // User 1's negatives at t=10 avoid 1 and 2 (rated at t=10).
        for row in [3, 5] {
            let m = s.train.batch.categorical["movie_id"][row];
            assert!(![1, 2].contains(&m), "negative {m}");
        }
        // At t=20 user 1 has history [1, 2] (movieId order within a timestamp), Comedy 2 vs
        // Drama 1 → top genre Comedy, like rate 1/2.
        let v = &s.val;
        let h = v.batch.history.as_ref().expect("history");
        assert_eq!(h.items[..2], [1, 2]);
        assert_eq!(h.len[0], 2);
        assert_eq!(v.past_counts[0], 2);
        assert_eq!(
            v.batch.categorical["user_top_genre"][0],
            feature_id("Comedy")
        );
        assert_eq!(v.batch.categorical["user_activity"][0], feature_id("1-5"));
        assert_eq!(v.batch.categorical["release_year"][0], feature_id("1980"));
        assert_eq!(v.batch.categorical["genres"][0], feature_id("Drama"));
        assert!((v.batch.dense[1] - 0.5).abs() < 1e-6);
        assert_eq!(v.labels[..2], [1.0, 0.0]);
        // User 2 at t=30: past is only movie 5 (no genres) → top genre "none"; title of movie 3
        // has no year.
        let t = &s.test;
        assert_eq!(t.batch.categorical["user_top_genre"][0], feature_id("none"));
        assert_eq!(
            t.batch.categorical["release_year"][0],
            feature_id("unknown")
        );
        assert_eq!(t.batch.history.as_ref().expect("h").items[..2], [5, 0]);
        assert_eq!(s.user_train_counts, BTreeMap::from([(1, 2), (2, 1)]));
        // Movie 2 had no rating before t=10; movie 4 none before 20.
        assert!((v.batch.dense[2] - 0.0).abs() < 1e-6);
        // The history cap (max_len 2) holds for user 1 at t=20 with 2 past ratings.
        assert!(h.len.iter().all(|&l| l <= 2));
    }

    #[test]
    fn history_is_capped_and_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ratings = "userId,movieId,rating,timestamp\n1,1,4,1\n1,2,4,2\n1,3,4,3\n1,4,4,4\n2,1,4,5\n2,2,4,6\n2,3,4,7\n2,4,4,8\n1,5,4,9\n2,5,4,10\n";
        write_files(dir.path(), TINY_MOVIES, ratings);
        let c = tiny_config(dir.path(), "", "watch");
        // With 5 movies, user 1 has rated all of them at t=9: no negative exists.
        let (movies, ratings) = read(&c, Path::new("/")).expect("read");
        let e = build(&c, &movies, &ratings)
            .expect_err("no negative")
            .to_string();
        assert!(e.contains("user 1") && e.contains("every movie"), "{e}");
        write_files(
            dir.path(),
            &format!("{TINY_MOVIES}6,Extra (2000),Drama\n"),
            &std::fs::read_to_string(dir.path().join(RATINGS_FILE)).expect("ratings"),
        );
        let (movies, ratings) = read(&c, Path::new("/")).expect("read");
        let p = build(&c, &movies, &ratings).expect("build");
        let test = &p.splits.test;
        // Test holds the last 2 events: user 1 at t=9 (past 4) and user 2 at t=10 (past 4).
        let h = test.batch.history.as_ref().expect("history");
        assert_eq!(h.width, 2);
        assert_eq!(h.len, vec![2, 2, 2, 2]);
        assert_eq!(h.items[..2], [3, 4]);
        assert_eq!(test.past_counts, vec![4, 4, 4, 4]);
    }

    #[test]
    fn malformed_ratings_name_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = tiny_config(dir.path(), "", "watch");
        for (ratings, line, column, word) in [
            (
                "userId,movieId,rating,timestamp\n1,1,4,1\n1,2,four,2\n",
                3,
                2,
                "four",
            ),
            (
                "userId,movieId,rating,timestamp\n1,1,4,1\n\n1,2,4\n",
                4,
                3,
                "columns",
            ),
            ("userId,movieId,rating,timestamp\nx,1,4,1\n", 2, 0, "userId"),
            ("userId,movieId,rating,timestamp\n1,99,4,1\n", 2, 1, "99"),
            ("userId,movie,rating,timestamp\n1,1,4,1\n", 1, 0, "header"),
            (
                "userId,movieId,rating,timestamp\n1,1,4,1\n1,2,7.5,2\n",
                3,
                2,
                "7.5",
            ),
        ] {
            write_files(dir.path(), TINY_MOVIES, ratings);
            let e = read(&c, Path::new("/")).expect_err("malformed").to_string();
            assert!(
                e.contains(RATINGS_FILE)
                    && e.contains(&format!("line {line},"))
                    && e.contains(&format!("column {column}:"))
                    && e.contains(word),
                "{e}"
            );
        }
        write_files(
            dir.path(),
            "movieId,title,genres\n1,\"Unterminated,Drama\n",
            "userId,movieId,rating,timestamp\n",
        );
        let e = read(&c, Path::new("/")).expect_err("bad quote").to_string();
        assert!(
            e.contains(MOVIES_FILE) && e.contains("line 2") && e.contains("unterminated"),
            "{e}"
        );
    }

    #[test]
    fn unknown_feature_or_task_is_named() {
        let r = real();
        let dir = tempfile::tempdir().expect("tempdir");
        let c = tiny_config(dir.path(), "shoe_size", "watch");
        let e = build(&c, &r.movies, &r.ratings)
            .expect_err("unknown cat")
            .to_string();
        assert!(e.contains("shoe_size"), "{e}");
        let text = config_text(ALL_CATS, r#""user_log_count", "mood""#, "watch", SEQ);
        let c = Config::from_toml_str(&text).expect("config");
        let e = build(&c, &r.movies, &r.ratings)
            .expect_err("unknown dense")
            .to_string();
        assert!(e.contains("mood"), "{e}");
        let text = config_text(ALL_CATS, ALL_DENSE, "watch clicks", SEQ);
        let c = Config::from_toml_str(&text).expect("config");
        let e = build(&c, &r.movies, &r.ratings)
            .expect_err("unknown task")
            .to_string();
        assert!(e.contains("clicks") && e.contains("watch, like"), "{e}");
        let text = config_text(
            ALL_CATS,
            ALL_DENSE,
            "watch",
            &SEQ.replace("movie_id", "genres"),
        );
        let c = Config::from_toml_str(&text).expect("config");
        let e = build(&c, &r.movies, &r.ratings)
            .expect_err("bad sequence")
            .to_string();
        assert!(e.contains("genres") && e.contains("movie_id"), "{e}");
    }

    #[test]
    fn without_sequence_there_is_no_history() {
        let r = real();
        let text = config_text("user_id movie_id:item", "", "like", "");
        let c = Config::from_toml_str(&text).expect("config");
        let p = build(&c, &r.movies, &r.ratings).expect("build");
        assert!(p.splits.train.batch.history.is_none());
        assert!(p.splits.train.batch.dense.is_empty());
        assert_eq!(p.splits.test.n_tasks(), 1);
        p.splits
            .test
            .batch
            .check(&c)
            .expect("batch fits the config");
        real()
            .prepared
            .splits
            .test
            .batch
            .check(&real().config)
            .expect("full batch fits");
    }

    #[test]
    fn csv_lines_and_release_years() {
        assert_eq!(
            split_csv_line(r#"1,"Foo, The (1999)",Drama|Comedy"#).expect("ok"),
            vec!["1", "Foo, The (1999)", "Drama|Comedy"]
        );
        assert_eq!(
            split_csv_line(r#""a""b",,"""#).expect("ok"),
            vec!["a\"b", "", ""]
        );
        assert_eq!(split_csv_line(r#"1,"x"y,2"#).map_err(|e| e.0), Err(1));
        assert_eq!(split_csv_line(r#"1,x"y"#).map_err(|e| e.0), Err(1));
        assert_eq!(split_csv_line(r#"1,2,"abc"#).map_err(|e| e.0), Err(2));
        assert_eq!(release_year("Toy Story (1995)"), Some("1995"));
        assert_eq!(release_year("Runaway Brain (1995) "), Some("1995"));
        assert_eq!(release_year("Babylon 5"), None);
        assert_eq!(release_year("Stranger Things (2016-)"), None);
        assert_eq!(release_year("(1)"), None);
    }

    #[test]
    fn fenwick_draws_follow_the_weights() {
        let mut f = Fenwick::with_ones(5);
        f.add(2, 3);
        assert_eq!(f.total, 8);
        let got: Vec<usize> = (0..8).map(|r| f.find(r)).collect();
        assert_eq!(got, vec![0, 1, 2, 2, 2, 2, 3, 4]);
        let one = Fenwick::with_ones(1);
        assert_eq!(one.find(0), 0);
    }

    #[test]
    fn negative_draw_falls_back_to_an_exact_scan() {
        // Movies 0..3 are rated and hugely popular; only movie 3 is left: rejection sampling
        // almost never finds it, the exact scan must.
        let mut f = Fenwick::with_ones(4);
        let past = vec![1u64 << 40, 1 << 40, 1 << 40, 0];
        for m in 0..3 {
            f.add(m, 1 << 40);
        }
        let user = UserState {
            rated: vec![0b0111],
            ..UserState::default()
        };
        let mut rng = rng::seeded(1);
        let mut rejected = 0;
        assert_eq!(
            draw_negative(&f, &past, &user, &mut rng, &mut rejected),
            Some(3)
        );
        assert_eq!(rejected, MAX_REJECTIONS as u64);
        let all = UserState {
            rated: vec![0b1111],
            ..UserState::default()
        };
        assert_eq!(
            draw_negative(&f, &past, &all, &mut rng, &mut rejected),
            None
        );
    }

    #[test]
    fn report_counts_rows_and_users() {
        let r = real();
        let rep = PrepareReport::new(&r.config, &r.prepared, r.ratings.len(), r.movies.len(), 0.0);
        for s in &rep.splits {
            assert_eq!(s.positives, s.negatives);
            assert!((s.label_rates[0].1 - 0.5).abs() < 1e-9);
        }
        let cohort_total: usize = rep.test_cohorts.iter().map(|(_, n)| n).sum();
        assert_eq!(cohort_total, r.prepared.splits.test.len());
        assert!(rep.new_test_users <= rep.test_users);
        assert!(rep.to_string().contains("test rows per cohort"));
    }
}
