//! What HITs cost, and the guard that refuses to spend past a maximum.
//!
//! Pure: amounts are whole US cents. MTurk's fee (its pricing page, as of
//! 2026): 20% of the reward paid to workers, plus another 20% for HITs with
//! 10 or more assignments, plus 5% when the Masters qualification is
//! required; at least $0.01 per assignment. Fees are rounded half up to the
//! cent.

use std::fmt;

/// An amount of money in US cents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(pub u64);

impl Cents {
    /// The amount as MTurk's API writes it: dollars with two decimals.
    ///
    /// ```
    /// use streamsift::mturk::Cents;
    /// assert_eq!(Cents(5).to_dollars(), "0.05");
    /// assert_eq!(Cents(1234).to_dollars(), "12.34");
    /// ```
    pub fn to_dollars(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }

    /// Reads MTurk's dollar strings ("10000.00", "0.5", "3"). `None` for
    /// anything else (negative, more than two decimals, not a number).
    ///
    /// ```
    /// use streamsift::mturk::Cents;
    /// assert_eq!(Cents::parse_dollars("10000.00"), Some(Cents(1_000_000)));
    /// assert_eq!(Cents::parse_dollars("0.5"), Some(Cents(50)));
    /// assert_eq!(Cents::parse_dollars("-1"), None);
    /// ```
    pub fn parse_dollars(text: &str) -> Option<Cents> {
        let text = text.trim();
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(frac) || frac.len() > 2 {
            return None;
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let frac: u64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u64>().ok()? * 10,
            _ => frac.parse().ok()?,
        };
        whole.checked_mul(100)?.checked_add(frac).map(Cents)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.to_dollars())
    }
}

/// MTurk's fee on one assignment paying `reward`.
///
/// ```
/// use streamsift::mturk::{Cents, fee_per_assignment};
/// assert_eq!(fee_per_assignment(Cents(10), 3, false), Cents(2));   // 20%
/// assert_eq!(fee_per_assignment(Cents(10), 10, false), Cents(4));  // 40% at 10+ assignments
/// assert_eq!(fee_per_assignment(Cents(2), 3, false), Cents(1));    // the $0.01 minimum
/// ```
pub fn fee_per_assignment(reward: Cents, max_assignments: u32, masters: bool) -> Cents {
    let mut percent: u64 = 20;
    if max_assignments >= 10 {
        percent += 20;
    }
    if masters {
        percent += 5;
    }
    // Half up: (reward × percent / 100) rounded to the nearest cent.
    let fee = (reward.0.saturating_mul(percent) + 50) / 100;
    Cents(fee.max(1))
}

/// The most one HIT can cost: every assignment paid and charged the fee.
pub fn hit_cost(reward: Cents, max_assignments: u32, masters: bool) -> Cents {
    let per = reward.0 + fee_per_assignment(reward, max_assignments, masters).0;
    Cents(per.saturating_mul(u64::from(max_assignments)))
}

/// Why the budget guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The HITs would take spending past the labeler's maximum.
    #[error(
        "creating {hits} HIT(s) would cost up to {cost} (rewards and MTurk's fee), and {spent} is \
         already committed: over the maximum spend of {max}. Raise max_spend or submit fewer items"
    )]
    OverMaxSpend {
        /// HITs asked for.
        hits: usize,
        /// Their cost.
        cost: Cents,
        /// Already committed by this labeler.
        spent: Cents,
        /// The maximum.
        max: Cents,
    },
    /// The account's available balance cannot pay for the HITs.
    #[error(
        "creating {hits} HIT(s) would cost up to {cost}, but the account's available balance is \
         {balance}: add funds (or use the sandbox)"
    )]
    InsufficientBalance {
        /// HITs asked for.
        hits: usize,
        /// Their cost.
        cost: Cents,
        /// What GetAccountBalance said.
        balance: Cents,
    },
}

/// Tracks what a labeler has committed and refuses past its maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetGuard {
    max: Cents,
    spent: Cents,
}

impl BudgetGuard {
    /// A guard allowing up to `max`.
    pub fn new(max: Cents) -> Self {
        BudgetGuard {
            max,
            spent: Cents(0),
        }
    }

    /// What HITs created so far may cost.
    pub fn spent(&self) -> Cents {
        self.spent
    }

    /// The maximum.
    pub fn max(&self) -> Cents {
        self.max
    }

    /// Whether `hits` HITs costing `cost` in all fit both the maximum and
    /// the available `balance`.
    pub fn check(&self, hits: usize, cost: Cents, balance: Cents) -> Result<(), BudgetError> {
        if self.spent.0.saturating_add(cost.0) > self.max.0 {
            return Err(BudgetError::OverMaxSpend {
                hits,
                cost,
                spent: self.spent,
                max: self.max,
            });
        }
        if cost > balance {
            return Err(BudgetError::InsufficientBalance {
                hits,
                cost,
                balance,
            });
        }
        Ok(())
    }

    /// Records a created HIT's cost.
    pub fn commit(&mut self, cost: Cents) {
        self.spent = Cents(self.spent.0.saturating_add(cost.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_follow_the_pricing_rules() {
        assert_eq!(fee_per_assignment(Cents(5), 3, false), Cents(1));
        assert_eq!(fee_per_assignment(Cents(50), 3, false), Cents(10));
        assert_eq!(fee_per_assignment(Cents(50), 9, false), Cents(10));
        assert_eq!(fee_per_assignment(Cents(50), 10, false), Cents(20));
        assert_eq!(fee_per_assignment(Cents(50), 3, true), Cents(13)); // 12.5 → 13
        assert_eq!(fee_per_assignment(Cents(0), 3, false), Cents(1));
        // 3 assignments of $0.05 + $0.01 fee each.
        assert_eq!(hit_cost(Cents(5), 3, false), Cents(18));
        assert_eq!(hit_cost(Cents(100), 10, false), Cents(1400));
    }

    #[test]
    fn the_guard_refuses_past_the_maximum_and_the_balance() {
        let mut g = BudgetGuard::new(Cents(100));
        assert_eq!(g.check(5, Cents(90), Cents(1000)), Ok(()));
        g.commit(Cents(90));
        assert!(matches!(
            g.check(1, Cents(18), Cents(1000)),
            Err(BudgetError::OverMaxSpend { .. })
        ));
        assert_eq!(g.check(1, Cents(10), Cents(1000)), Ok(()));
        let err = g.check(1, Cents(10), Cents(9)).unwrap_err();
        assert!(err.to_string().contains("$0.09"), "{err}");
    }

    #[test]
    fn dollars_round_trip() {
        for c in [0, 1, 9, 10, 99, 100, 123_456] {
            assert_eq!(Cents::parse_dollars(&Cents(c).to_dollars()), Some(Cents(c)));
        }
        for bad in ["", ".", "1.234", "abc", "1e3", "-0.01", "1.-1"] {
            assert_eq!(Cents::parse_dollars(bad), None, "{bad}");
        }
    }
}
