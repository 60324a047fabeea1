//! The strict answer parser and the confidence from token logprobs.

use serde_json::Value;

use super::error::AnswerProblem;
use super::transport::{ChatAnswer, Finish, TokenLogprob};

/// The label of an answer: exactly the JSON object `{"label": L}` (white
/// space around it allowed) with `L` one of `labels`.
pub(crate) fn parse_label<'l>(
    answer: &ChatAnswer,
    labels: &'l [String],
) -> Result<&'l str, AnswerProblem> {
    let content = answer.content.as_deref().unwrap_or("").trim();
    if answer.finish == Finish::Length {
        return Err(AnswerProblem::Truncated);
    }
    if content.is_empty() {
        return Err(AnswerProblem::Empty);
    }
    let v: Value = serde_json::from_str(content).map_err(|_| AnswerProblem::Malformed)?;
    let Value::Object(map) = v else {
        return Err(AnswerProblem::Malformed);
    };
    if map.len() != 1 {
        return Err(AnswerProblem::Malformed);
    }
    let Some(Value::String(label)) = map.get("label") else {
        return Err(AnswerProblem::Malformed);
    };
    labels
        .iter()
        .find(|l| *l == label)
        .map(String::as_str)
        .ok_or(AnswerProblem::OutsideLabelSet)
}

/// A probability per label from the answer's token logprobs, or `None`
/// when the answer has none (or they do not spell the answer).
///
/// The chosen label's probability is the product of the probabilities of
/// the tokens that spell it. Where the first of those tokens has
/// `top_logprobs`, each alternative token that starts exactly one other
/// label gives that label its probability, and the scores are renormalised
/// over the label set; labels no alternative starts get 0. Without
/// alternatives, a two-label set gives the other label the rest
/// (1 − p); a larger set keeps the chosen label's probability only.
/// When one alternative could start several labels, the split cannot be
/// known and only the chosen label's probability is kept.
pub(crate) fn label_scores(
    content: &str,
    tokens: &[TokenLogprob],
    chosen: &str,
    labels: &[String],
) -> Option<Vec<(String, f64)>> {
    let spelled: String = tokens.iter().map(|t| t.token.as_str()).collect();
    if spelled != content {
        return None;
    }
    let enc = |l: &str| {
        let j = serde_json::to_string(l).unwrap_or_default();
        j[1..j.len().saturating_sub(1)].to_owned()
    };
    // The label's value span in the content.
    let key = content.find("\"label\"")?;
    let after_key = key + "\"label\"".len();
    let colon = after_key + content[after_key..].find(':')?;
    let rest = &content[colon + 1..];
    let quote = colon + 1 + rest.len() - rest.trim_start().len();
    if content.as_bytes().get(quote) != Some(&b'"') {
        return None;
    }
    let start = quote + 1;
    let chosen_enc = enc(chosen);
    if !content[start..].starts_with(&format!("{chosen_enc}\"")) {
        return None;
    }
    let end = start + chosen_enc.len();
    // Tokens overlapping [start, end).
    let mut offset = 0;
    let mut first: Option<(usize, usize)> = None;
    let mut logp = 0.0;
    for (i, t) in tokens.iter().enumerate() {
        let (a, b) = (offset, offset + t.token.len());
        offset = b;
        if b > start && a < end {
            if first.is_none() {
                first = Some((i, a));
            }
            logp += t.logprob;
        }
    }
    let (fi, fa) = first?;
    let p_chosen = logp.exp();
    if !p_chosen.is_finite() {
        return None;
    }
    let prefix = &content[fa..start];
    let first_token = &tokens[fi];
    let others: Vec<&String> = labels.iter().filter(|l| l.as_str() != chosen).collect();
    let mut mass: Vec<f64> = vec![0.0; others.len()];
    let mut seen_alternative = false;
    for (t, lp) in &first_token.top {
        if *t == first_token.token {
            continue;
        }
        let Some(rest) = t.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let starts: Vec<usize> = others
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let quoted = format!("{}\"", enc(l));
                quoted.starts_with(rest) || rest.starts_with(&quoted)
            })
            .map(|(i, _)| i)
            .collect();
        match starts.as_slice() {
            [] => {}
            [i] => {
                mass[*i] += lp.exp();
                seen_alternative = true;
            }
            _ => return Some(vec![(chosen.to_owned(), p_chosen.clamp(0.0, 1.0))]),
        }
    }
    let mut out = Vec::with_capacity(labels.len());
    if seen_alternative {
        let total = p_chosen + mass.iter().sum::<f64>();
        for l in labels {
            let m = if l == chosen {
                p_chosen
            } else {
                others
                    .iter()
                    .position(|o| *o == l)
                    .map(|i| mass[i])
                    .unwrap_or(0.0)
            };
            out.push((l.clone(), (m / total).clamp(0.0, 1.0)));
        }
    } else if labels.len() == 2 {
        for l in labels {
            let p = if l == chosen {
                p_chosen
            } else {
                1.0 - p_chosen
            };
            out.push((l.clone(), p.clamp(0.0, 1.0)));
        }
    } else {
        out.push((chosen.to_owned(), p_chosen.clamp(0.0, 1.0)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(t: &str, lp: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: t.into(),
            logprob: lp,
            top: top.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
        }
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renormalises_over_the_label_set() {
        let l = labels(&["bug", "question", "none"]);
        let toks = [
            tok("{\"label\":\"", 0.0, &[]),
            tok(
                "bug",
                0.6f64.ln(),
                &[
                    ("bug", 0.6f64.ln()),
                    ("question", 0.2f64.ln()),
                    ("hello", 0.1f64.ln()),
                ],
            ),
            tok("\"}", 0.0, &[]),
        ];
        let s = label_scores("{\"label\":\"bug\"}", &toks, "bug", &l).unwrap();
        let get = |n: &str| s.iter().find(|(l, _)| l == n).unwrap().1;
        assert!((get("bug") - 0.75).abs() < 1e-9, "{s:?}");
        assert!((get("question") - 0.25).abs() < 1e-9);
        assert_eq!(get("none"), 0.0);
    }

    #[test]
    fn multi_token_labels_and_merged_prefix() {
        let l = labels(&["actionable", "noise"]);
        let toks = [
            tok(
                "{\"label\": \"act",
                0.9f64.ln(),
                &[
                    ("{\"label\": \"act", 0.9f64.ln()),
                    ("{\"label\": \"no", 0.1f64.ln()),
                ],
            ),
            tok("ionable", 0.0, &[]),
            tok("\"}", 0.0, &[]),
        ];
        let s = label_scores("{\"label\": \"actionable\"}", &toks, "actionable", &l).unwrap();
        assert!((s[0].1 - 0.9).abs() < 1e-9, "{s:?}");
        assert!((s[1].1 - 0.1).abs() < 1e-9);
    }

    #[test]
    fn tokens_that_do_not_spell_the_answer_give_none() {
        let l = labels(&["a", "b"]);
        assert!(label_scores("{\"label\":\"a\"}", &[tok("x", 0.0, &[])], "a", &l).is_none());
    }
}
