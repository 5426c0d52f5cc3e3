//! The traffic mix: which classes of query there are, in what proportions
//! (`--mix blocked=70,cached=20,...`), and the order that spreads them.

/// Query classes, in `--mix` order.
pub(crate) const CLASSES: [&str; 5] = ["blocked", "cached", "forwarded", "tcp", "malformed"];
pub(crate) const BLOCKED: usize = 0;
pub(crate) const CACHED: usize = 1;
pub(crate) const FORWARDED: usize = 2;
pub(crate) const TCP: usize = 3;
pub(crate) const MALFORMED: usize = 4;

/// A class weight per class, in [`CLASSES`] order.
pub(crate) type Mix = [u32; 5];

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}: expected class=weight,...")]
    NotClassWeight(String),
    #[error("unknown class {0} (one of {classes})", classes = CLASSES.join(", "))]
    UnknownClass(String),
    #[error("{0}: expected a whole number")]
    NotAWeight(String),
    #[error("every weight is 0")]
    AllZero,
}

/// `blocked=70,cached=20,...`: weights of the classes; a class not named is 0.
pub(crate) fn parse(s: &str) -> Result<Mix, Error> {
    let mut mix = [0u32; 5];
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Error::NotClassWeight(part.to_string()))?;
        let c = CLASSES
            .iter()
            .position(|n| *n == k.trim())
            .ok_or_else(|| Error::UnknownClass(k.to_string()))?;
        mix[c] = v
            .trim()
            .parse()
            .map_err(|_| Error::NotAWeight(k.to_string()))?;
    }
    if mix.iter().all(|w| *w == 0) {
        return Err(Error::AllZero);
    }
    Ok(mix)
}

/// Classes in a smooth repeating order with the given weights (the smooth
/// weighted round robin of nginx), so every class is spread over the second
/// and not sent in bursts.
pub(crate) fn pattern(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut cur = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in cur.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let Some((best, _)) = cur
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, usize::MAX - i))
        else {
            break;
        };
        cur[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_parses() {
        assert_eq!(
            parse("blocked=70,cached=20,forwarded=5,tcp=3,malformed=2").unwrap(),
            [70, 20, 5, 3, 2]
        );
        assert_eq!(parse(" tcp = 1 ").unwrap(), [0, 0, 0, 1, 0]);
    }

    #[test]
    fn bad_mixes_are_refused() {
        assert!(matches!(parse("blocked"), Err(Error::NotClassWeight(_))));
        assert!(matches!(parse("dropped=1"), Err(Error::UnknownClass(_))));
        assert!(matches!(parse("tcp=-1"), Err(Error::NotAWeight(_))));
        assert!(matches!(parse("tcp=0,blocked=0"), Err(Error::AllZero)));
    }

    #[test]
    fn the_pattern_has_each_class_by_its_weight_and_spreads_it() {
        let w = [70, 20, 5, 3, 2];
        let p = pattern(&w);
        assert_eq!(p.len(), 100);
        for (c, &n) in w.iter().enumerate() {
            assert_eq!(p.iter().filter(|x| **x == c).count(), n as usize);
            // Spread: each half of the cycle holds about half of a class.
            let first = p[..50].iter().filter(|x| **x == c).count() as i64;
            assert!(
                (first - i64::from(n) / 2).abs() <= 1,
                "class {c}: {first} of {n}"
            );
        }
        assert_eq!(pattern(&[2, 1]), [0, 1, 0]);
        assert_eq!(pattern(&[0, 3]), [1, 1, 1]);
    }
}
