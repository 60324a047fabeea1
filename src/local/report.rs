//! A self-contained HTML report of an evaluation: ROC and PR curves with the
//! chosen threshold marked, score histograms per class, confusion matrices,
//! a reliability plot, the top features and the worst mistakes.
//!
//! The file has inline CSS and inline SVG, no script and no external
//! reference, so it opens anywhere, offline. Every piece of text that comes
//! from data or from the caller (title, labels, feature names, tweet text)
//! is HTML-escaped.
//!
//! ```
//! use streamsift::local::{evaluate_binary, worst_misclassified, BinaryEvalOptions, ReportInput};
//!
//! let texts = ["site down again", "love the new <b>UI</b>", "can't log in", "thanks!"];
//! let scores = [0.9, 0.4, 0.35, 0.1];
//! let truth = [true, false, true, false];
//! let eval = evaluate_binary(&scores, &truth, &BinaryEvalOptions::default())?;
//! let worst = worst_misclassified(&texts, &scores, &truth, eval.threshold.threshold,
//!                                 "actionable", "noise", 10)?;
//! let html = ReportInput::new("Support tweets")
//!     .binary(eval, "actionable", "noise")
//!     .features(vec![("down".into(), 2.1), ("thanks".into(), -1.4)])
//!     .examples(worst)
//!     .note("training time", "0.4 s")
//!     .render();
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! // the one mistake (a false positive at 0.4) is listed, escaped
//! assert!(html.contains("love the new &lt;b&gt;UI&lt;/b&gt;"));
//! assert!(!html.contains("<b>UI"));
//! # Ok::<(), streamsift::local::EvalError>(())
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::eval::{BinaryEvaluation, EvalError, MulticlassEvaluation, ThresholdRule};

/// A binary evaluation and the names of its two classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// The evaluation.
    pub evaluation: BinaryEvaluation,
    /// The positive class's label (such as `"actionable"`).
    pub positive_label: String,
    /// The negative class's label.
    pub negative_label: String,
}

/// One example shown in the report's table of mistakes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredExample {
    /// Its text (escaped when rendered).
    pub text: String,
    /// The true label.
    pub truth: String,
    /// The predicted label.
    pub predicted: String,
    /// The model's score (probability of the predicted or positive class).
    pub score: f64,
}

/// Everything the report shows. Build it with [`ReportInput::new`] and the
/// chained setters; every part but the title is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    /// The report's title.
    pub title: String,
    /// Extra key figures as `(name, value)`, shown first (training time,
    /// data set, model settings).
    pub notes: Vec<(String, String)>,
    /// The binary evaluation.
    pub binary: Option<BinaryReport>,
    /// The multi-class evaluation.
    pub multiclass: Option<MulticlassEvaluation>,
    /// Feature names and weights; the report shows the `top_n` most
    /// positive and most negative. Non-finite weights are left out.
    pub top_features: Vec<(String, f64)>,
    /// How many features to show on each side (default 20).
    pub top_n: usize,
    /// Examples to list, such as the worst mistakes
    /// ([`worst_misclassified`]).
    pub examples: Vec<ScoredExample>,
}

impl ReportInput {
    /// An empty report with a title.
    pub fn new(title: impl Into<String>) -> Self {
        ReportInput {
            title: title.into(),
            top_n: 20,
            ..ReportInput::default()
        }
    }

    /// Adds a binary evaluation with its class labels.
    pub fn binary(
        mut self,
        evaluation: BinaryEvaluation,
        positive_label: impl Into<String>,
        negative_label: impl Into<String>,
    ) -> Self {
        self.binary = Some(BinaryReport {
            evaluation,
            positive_label: positive_label.into(),
            negative_label: negative_label.into(),
        });
        self
    }

    /// Adds a multi-class evaluation.
    pub fn multiclass(mut self, evaluation: MulticlassEvaluation) -> Self {
        self.multiclass = Some(evaluation);
        self
    }

    /// Sets the feature weights.
    pub fn features(mut self, weights: Vec<(String, f64)>) -> Self {
        self.top_features = weights;
        self
    }

    /// Sets the examples to list.
    pub fn examples(mut self, examples: Vec<ScoredExample>) -> Self {
        self.examples = examples;
        self
    }

    /// Adds a key figure.
    pub fn note(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.notes.push((name.into(), value.into()));
        self
    }

    /// Renders the HTML document.
    pub fn render(&self) -> String {
        render_html(self)
    }

    /// Renders and writes the HTML document to `path`.
    pub fn write_to(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.render())
    }
}

/// The `n` misclassified examples the model was surest about, worst first:
/// positives with the lowest scores and negatives with the highest, ranked
/// by log-loss. A score `>= threshold` is predicted positive.
pub fn worst_misclassified<S: AsRef<str>>(
    texts: &[S],
    scores: &[f64],
    truth: &[bool],
    threshold: f64,
    positive_label: &str,
    negative_label: &str,
    n: usize,
) -> Result<Vec<ScoredExample>, EvalError> {
    if texts.len() != scores.len() || scores.len() != truth.len() {
        return Err(EvalError::LengthMismatch {
            scores: scores.len(),
            truth: truth.len().min(texts.len()),
        });
    }
    let mut wrong: Vec<(f64, usize)> = scores
        .iter()
        .zip(truth)
        .enumerate()
        .filter(|(_, (s, t))| (**s >= threshold) != **t)
        .map(|(i, (&s, &t))| {
            let p_true = if t { s } else { 1.0 - s };
            (-(p_true.clamp(1e-15, 1.0)).ln(), i)
        })
        .collect();
    wrong.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(wrong
        .into_iter()
        .take(n)
        .filter_map(|(_, i)| {
            let (text, &score, &t) = (texts.get(i)?, scores.get(i)?, truth.get(i)?);
            let (truth, predicted) = if t {
                (positive_label, negative_label)
            } else {
                (negative_label, positive_label)
            };
            Some(ScoredExample {
                text: text.as_ref().to_string(),
                truth: truth.to_string(),
                predicted: predicted.to_string(),
                score,
            })
        })
        .collect())
}

/// Escapes text for HTML element content and attribute values.
///
/// ```
/// use streamsift::local::escape_html;
/// assert_eq!(escape_html(r#""><img src=x onerror=alert(1)>"#),
///            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;");
/// ```
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for display: `digits` decimals, or `n/a` if not finite.
fn num(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "n/a".to_string()
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| num(v, digits))
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right;vertical-align:top}\
th{background:#f4f4f4}td.text{text-align:left;max-width:600px;white-space:pre-wrap;word-break:break-word}\
td.name{text-align:left;font-family:ui-monospace,monospace}\
.grid{display:flex;flex-wrap:wrap;gap:1.5em}.grid figure{margin:0}figcaption{font-size:.9em;color:#555;max-width:400px}\
svg{background:#fff;border:1px solid #eee}svg text{font-size:11px;fill:#333}\
.axis{stroke:#333;stroke-width:1}.grid-line{stroke:#eee;stroke-width:1}.ref{stroke:#aaa;stroke-dasharray:4 3}\
.curve{fill:none;stroke:#1f77b4;stroke-width:2}.mark{fill:#d62728}.pos{fill:#d62728;fill-opacity:.75}.neg{fill:#1f77b4;fill-opacity:.75}\
.thr{stroke:#d62728;stroke-dasharray:5 3;stroke-width:1.5}.bar{display:inline-block;height:.8em;background:#1f77b4}.bar.negw{background:#d62728}\
.muted{color:#777;font-size:.9em}";

/// Renders the report as one HTML document (see the module docs).
pub fn render_html(input: &ReportInput) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = escape_html(&input.title);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str(&format!(
        "<title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    ));
    key_numbers(&mut out, input);
    if let Some(b) = &input.binary {
        binary_section(&mut out, b);
    }
    if let Some(m) = &input.multiclass {
        multiclass_section(&mut out, m);
    }
    features_section(&mut out, &input.top_features, input.top_n);
    examples_section(&mut out, &input.examples);
    out.push_str("</body></html>\n");
    out
}

fn row(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!(
        "<tr><th style=\"text-align:left\">{}</th><td>{}</td></tr>\n",
        escape_html(name),
        escape_html(value)
    ));
}

fn key_numbers(out: &mut String, input: &ReportInput) {
    out.push_str("<h2>Key numbers</h2>\n<table>\n");
    for (k, v) in &input.notes {
        row(out, k, v);
    }
    if let Some(b) = &input.binary {
        let e = &b.evaluation;
        let t = &e.threshold;
        row(out, "examples", &e.n.to_string());
        row(
            out,
            &format!("positives ({})", b.positive_label),
            &e.positives.to_string(),
        );
        row(
            out,
            &format!("negatives ({})", b.negative_label),
            &e.negatives.to_string(),
        );
        row(out, "ROC AUC", &num(e.roc_auc, 4));
        row(out, "average precision", &num(e.average_precision, 4));
        row(out, "log-loss", &num(e.log_loss, 4));
        row(
            out,
            "expected calibration error",
            &num(e.reliability.expected_calibration_error, 4),
        );
        let rule = match t.rule {
            ThresholdRule::MinExpectedCost => format!(
                "lowest expected cost (false negative {} : false positive {})",
                num(t.costs.false_negative, 2),
                num(t.costs.false_positive, 2)
            ),
            ThresholdRule::MinRecall { target } => {
                format!("highest threshold with recall ≥ {}", num(target, 3))
            }
        };
        row(out, "threshold rule", &rule);
        row(
            out,
            "threshold (score ≥ it is positive)",
            &num(t.threshold, 4),
        );
        row(out, "precision at threshold", &opt(t.precision, 4));
        row(out, "recall at threshold", &opt(t.recall, 4));
        row(out, "F1 at threshold", &opt(t.f1(), 4));
        row(out, "expected cost per record", &num(t.expected_cost, 4));
        row(
            out,
            "precision / recall at 0.5",
            &format!(
                "{} / {}",
                opt(e.at_half.precision(), 4),
                opt(e.at_half.recall(), 4)
            ),
        );
    }
    if let Some(m) = &input.multiclass {
        row(out, "multi-class examples", &m.n.to_string());
        row(out, "accuracy", &num(m.accuracy, 4));
        row(out, "macro-F1", &num(m.macro_f1, 4));
        row(out, "multi-class log-loss", &num(m.log_loss, 4));
    }
    out.push_str("</table>\n");
}

/// A plot area mapping data coordinates to SVG pixels.
struct Chart {
    width: f64,
    height: f64,
    margin: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Chart {
    fn square(x: (f64, f64), y: (f64, f64)) -> Chart {
        Chart {
            width: 360.0,
            height: 320.0,
            margin: 45.0,
            x,
            y,
        }
    }

    fn px(&self, x: f64) -> f64 {
        let span = (self.x.1 - self.x.0).max(f64::MIN_POSITIVE);
        let v = self.margin + (x - self.x.0) / span * (self.width - 1.5 * self.margin);
        if v.is_finite() { v } else { self.margin }
    }

    fn py(&self, y: f64) -> f64 {
        let span = (self.y.1 - self.y.0).max(f64::MIN_POSITIVE);
        let bottom = self.height - self.margin;
        let v = bottom - (y - self.y.0) / span * (self.height - 1.5 * self.margin);
        if v.is_finite() { v } else { bottom }
    }

    fn open(&self, out: &mut String, label: &str) {
        out.push_str(&format!(
            "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{l}\">\n",
            w = self.width,
            h = self.height,
            l = escape_html(label)
        ));
    }

    fn axes(
        &self,
        out: &mut String,
        x_label: &str,
        y_label: &str,
        x_ticks: &[f64],
        y_ticks: &[f64],
    ) {
        let (x0, x1) = (self.px(self.x.0), self.px(self.x.1));
        let (y0, y1) = (self.py(self.y.0), self.py(self.y.1));
        for &t in y_ticks {
            let y = self.py(t);
            out.push_str(&format!(
                "<line class=\"grid-line\" x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                x0 - 4.0,
                y + 4.0,
                tick(t)
            ));
        }
        for &t in x_ticks {
            let x = self.px(t);
            out.push_str(&format!(
                "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{y0:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                y0 + 4.0,
                y0 + 16.0,
                tick(t)
            ));
        }
        out.push_str(&format!(
            "<line class=\"axis\" x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x1:.1}\" y2=\"{y0:.1}\"/>\
             <line class=\"axis\" x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x0:.1}\" y2=\"{y1:.1}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"12\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">{}</text>\n",
            (x0 + x1) / 2.0,
            self.height - 8.0,
            escape_html(x_label),
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            escape_html(y_label)
        ));
    }

    fn polyline(
        &self,
        out: &mut String,
        class: &str,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) {
        let pts: Vec<String> = points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        out.push_str(&format!(
            "<polyline class=\"{class}\" points=\"{}\"/>\n",
            pts.join(" ")
        ));
    }

    fn marker(&self, out: &mut String, x: f64, y: f64, label: &str) {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        let (cx, cy) = (self.px(x), self.py(y));
        let anchor = if cx > self.width * 0.6 {
            "end"
        } else {
            "start"
        };
        let dx = if anchor == "end" { -8.0 } else { 8.0 };
        out.push_str(&format!(
            "<circle class=\"mark\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\"><title>{l}</title></circle>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{l}</text>\n",
            cx + dx,
            cy + 14.0,
            l = escape_html(label)
        ));
    }
}

fn tick(t: f64) -> String {
    if t.fract() == 0.0 && t.abs() < 1e9 {
        format!("{t:.0}")
    } else {
        num(t, 1)
    }
}

const UNIT_TICKS: [f64; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];

fn figure(out: &mut String, caption: &str, body: impl FnOnce(&mut String)) {
    out.push_str("<figure>");
    body(out);
    out.push_str(&format!(
        "<figcaption>{}</figcaption></figure>\n",
        escape_html(caption)
    ));
}

fn binary_section(out: &mut String, b: &BinaryReport) {
    let e = &b.evaluation;
    let t = &e.threshold;
    let mark = format!("threshold {}", num(t.threshold, 3));
    out.push_str(&format!(
        "<h2>Binary: {} vs {}</h2>\n<div class=\"grid\">\n",
        escape_html(&b.positive_label),
        escape_html(&b.negative_label)
    ));

    figure(
        out,
        &format!(
            "ROC curve, AUC {}. The dot is the chosen threshold.",
            num(e.roc_auc, 4)
        ),
        |out| {
            let c = Chart::square((0.0, 1.0), (0.0, 1.0));
            c.open(out, "ROC curve");
            c.axes(
                out,
                "false positive rate",
                "true positive rate (recall)",
                &UNIT_TICKS,
                &UNIT_TICKS,
            );
            c.polyline(out, "ref", [(0.0, 0.0), (1.0, 1.0)]);
            c.polyline(out, "curve", e.roc.iter().map(|p| (p.fpr, p.tpr)));
            if let (Some(fpr), Some(tpr)) = (t.confusion.false_positive_rate(), t.recall) {
                c.marker(out, fpr, tpr, &mark);
            }
            out.push_str("</svg>");
        },
    );

    figure(
        out,
        &format!(
            "Precision–recall curve, average precision {}. The dashed line is the positive rate.",
            num(e.average_precision, 4)
        ),
        |out| {
            let c = Chart::square((0.0, 1.0), (0.0, 1.0));
            c.open(out, "Precision-recall curve");
            c.axes(out, "recall", "precision", &UNIT_TICKS, &UNIT_TICKS);
            let base = e.positives as f64 / e.n.max(1) as f64;
            c.polyline(out, "ref", [(0.0, base), (1.0, base)]);
            let first = e.pr.first().map(|p| (0.0, p.precision));
            c.polyline(
                out,
                "curve",
                first
                    .into_iter()
                    .chain(e.pr.iter().map(|p| (p.recall, p.precision))),
            );
            if let (Some(r), Some(p)) = (t.recall, t.precision) {
                c.marker(out, r, p, &mark);
            }
            out.push_str("</svg>");
        },
    );

    figure(
        out,
        &format!(
            "Scores per class ({} red, {} blue); the dashed line is the threshold.",
            b.positive_label, b.negative_label
        ),
        |out| histogram(out, e, &b.positive_label, &b.negative_label),
    );

    figure(
        out,
        &format!(
            "Reliability: mean predicted probability against the observed rate per bin (expected calibration error {}).",
            num(e.reliability.expected_calibration_error, 4)
        ),
        |out| {
            let c = Chart::square((0.0, 1.0), (0.0, 1.0));
            c.open(out, "Reliability plot");
            c.axes(
                out,
                "mean predicted probability",
                "observed positive rate",
                &UNIT_TICKS,
                &UNIT_TICKS,
            );
            c.polyline(out, "ref", [(0.0, 0.0), (1.0, 1.0)]);
            let pts: Vec<(f64, f64)> = e
                .reliability
                .bins
                .iter()
                .filter_map(|b| Some((b.mean_predicted?, b.observed_rate?)))
                .collect();
            c.polyline(out, "curve", pts.iter().copied());
            for (x, y) in pts {
                out.push_str(&format!(
                    "<circle class=\"neg\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\"/>",
                    c.px(x),
                    c.py(y)
                ));
            }
            out.push_str("</svg>");
        },
    );
    out.push_str("</div>\n");

    let (pos, neg) = (
        escape_html(&b.positive_label),
        escape_html(&b.negative_label),
    );
    let cm = &t.confusion;
    out.push_str(&format!(
        "<h3>Confusion matrix at threshold {}</h3>\n<table><tr><th>truth \\ predicted</th><th>{pos}</th><th>{neg}</th></tr>\n\
         <tr><th>{pos}</th>{}{}</tr>\n<tr><th>{neg}</th>{}{}</tr></table>\n",
        num(t.threshold, 4),
        cell(cm.tp, cm.tp + cm.fn_, true),
        cell(cm.fn_, cm.tp + cm.fn_, false),
        cell(cm.fp, cm.fp + cm.tn, false),
        cell(cm.tn, cm.fp + cm.tn, true),
    ));

    out.push_str(
        "<h3>Reliability table</h3>\n<table><tr><th>bin</th><th>count</th><th>positives</th>\
         <th>mean predicted</th><th>observed rate</th></tr>\n",
    );
    for bin in &e.reliability.bins {
        out.push_str(&format!(
            "<tr><td>{}–{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            num(bin.low, 2),
            num(bin.high, 2),
            bin.count,
            bin.positives,
            opt(bin.mean_predicted, 3),
            opt(bin.observed_rate, 3)
        ));
    }
    out.push_str("</table>\n");
}

/// A table cell shaded by its share of the row; `diagonal` cells are green,
/// others red.
fn cell(count: u64, row_total: u64, diagonal: bool) -> String {
    let share = if row_total > 0 {
        count as f64 / row_total as f64
    } else {
        0.0
    };
    let rgb = if diagonal { "44,160,44" } else { "214,39,40" };
    format!(
        "<td style=\"background:rgba({rgb},{:.2})\" title=\"{} of the row\">{count}</td>",
        0.08 + 0.6 * share,
        num(share * 100.0, 1) + "%"
    )
}

fn histogram(out: &mut String, e: &BinaryEvaluation, pos: &str, neg: &str) {
    let h = &e.histogram;
    let max = h
        .positive
        .iter()
        .chain(&h.negative)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let c = Chart::square((0.0, 1.0), (0.0, max));
    c.open(out, "Score histogram per class");
    let y_ticks: Vec<f64> = (0..=4).map(|i| (max * i as f64 / 4.0).round()).collect();
    c.axes(out, "score", "examples", &UNIT_TICKS, &y_ticks);
    let bins = h.positive.len().min(h.negative.len());
    for i in 0..bins {
        let (Some(&lo), Some(&hi)) = (h.edges.get(i), h.edges.get(i + 1)) else {
            continue;
        };
        let mid = (lo + hi) / 2.0;
        for (class, count, from, to, name) in [
            ("neg", h.negative[i], lo, mid, neg),
            ("pos", h.positive[i], mid, hi, pos),
        ] {
            let (x0, x1) = (c.px(from), c.px(to));
            let (y0, y1) = (c.py(count as f64), c.py(0.0));
            out.push_str(&format!(
                "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {count} in {}–{}</title></rect>",
                (x1 - x0 - 0.5).max(0.0),
                (y1 - y0).max(0.0),
                escape_html(name),
                num(lo, 2),
                num(hi, 2)
            ));
        }
    }
    let t = e.threshold.threshold.clamp(0.0, 1.0);
    out.push_str(&format!(
        "<line class=\"thr\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>",
        c.py(0.0),
        c.py(max),
        x = c.px(t)
    ));
    // legend, top right
    let lx = c.px(1.0) - 120.0;
    for (k, (class, name)) in [("pos", pos), ("neg", neg)].into_iter().enumerate() {
        let y = 6.0 + 14.0 * k as f64;
        out.push_str(&format!(
            "<rect class=\"{class}\" x=\"{lx:.1}\" y=\"{y:.1}\" width=\"10\" height=\"10\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 14.0,
            y + 9.0,
            escape_html(name)
        ));
    }
    out.push_str("</svg>");
}

fn multiclass_section(out: &mut String, m: &MulticlassEvaluation) {
    out.push_str("<h2>Multi-class</h2>\n<h3>Confusion matrix (rows: truth, columns: predicted)</h3>\n<table><tr><th></th>");
    for l in &m.labels {
        out.push_str(&format!("<th>{}</th>", escape_html(l)));
    }
    out.push_str("<th>support</th></tr>\n");
    for (i, (l, counts)) in m.labels.iter().zip(&m.confusion).enumerate() {
        let total: u64 = counts.iter().sum();
        out.push_str(&format!("<tr><th>{}</th>", escape_html(l)));
        for (j, &c) in counts.iter().enumerate() {
            out.push_str(&cell(c, total, i == j));
        }
        out.push_str(&format!("<td>{total}</td></tr>\n"));
    }
    out.push_str(
        "</table>\n<h3>Per class</h3>\n<table><tr><th>label</th><th>precision</th><th>recall</th>\
         <th>F1</th><th>support</th><th>predicted</th></tr>\n",
    );
    for c in &m.per_class {
        out.push_str(&format!(
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape_html(&c.label),
            opt(c.precision, 3),
            opt(c.recall, 3),
            opt(c.f1, 3),
            c.support,
            c.predicted
        ));
    }
    out.push_str(&format!(
        "</table>\n<p>accuracy {}, macro-F1 {}, log-loss {}</p>\n",
        num(m.accuracy, 4),
        num(m.macro_f1, 4),
        num(m.log_loss, 4)
    ));
}

fn features_section(out: &mut String, weights: &[(String, f64)], top_n: usize) {
    if weights.is_empty() {
        return;
    }
    let mut finite: Vec<&(String, f64)> = weights.iter().filter(|(_, w)| w.is_finite()).collect();
    let dropped = weights.len() - finite.len();
    finite.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let positive: Vec<_> = finite
        .iter()
        .filter(|(_, w)| *w > 0.0)
        .take(top_n)
        .collect();
    let negative: Vec<_> = finite
        .iter()
        .rev()
        .filter(|(_, w)| *w < 0.0)
        .take(top_n)
        .collect();
    let max = finite
        .iter()
        .map(|(_, w)| w.abs())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    out.push_str("<h2>Top features</h2>\n<div class=\"grid\">\n");
    for (title, list, class) in [
        ("Most positive", positive, "bar"),
        ("Most negative", negative, "bar negw"),
    ] {
        out.push_str(&format!(
            "<div><h3>{title}</h3><table><tr><th>feature</th><th>weight</th><th></th></tr>\n"
        ));
        for (name, w) in list.iter().map(|f| (&f.0, f.1)) {
            out.push_str(&format!(
                "<tr><td class=\"name\">{}</td><td>{}</td><td style=\"text-align:left;width:160px\"><span class=\"{class}\" style=\"width:{:.0}px\"></span></td></tr>\n",
                escape_html(name),
                num(w, 4),
                (w.abs() / max * 150.0).max(1.0)
            ));
        }
        out.push_str("</table></div>\n");
    }
    out.push_str("</div>\n");
    if dropped > 0 {
        out.push_str(&format!(
            "<p class=\"muted\">{dropped} features with a non-finite weight are not shown.</p>\n"
        ));
    }
}

fn examples_section(out: &mut String, examples: &[ScoredExample]) {
    if examples.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Worst mistakes</h2>\n<table><tr><th>text</th><th>truth</th><th>predicted</th><th>score</th></tr>\n",
    );
    for ex in examples {
        out.push_str(&format!(
            "<tr><td class=\"text\">{}</td><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td></tr>\n",
            escape_html(&ex.text),
            escape_html(&ex.truth),
            escape_html(&ex.predicted),
            num(ex.score, 4)
        ));
    }
    out.push_str("</table>\n");
}
