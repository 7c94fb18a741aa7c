//! Checks shared by the sharders that take a list of weighted nodes.

use std::collections::HashSet;

use crate::Error;

/// A validated node list: names non-empty and unique, weights at least 1, at most `max` nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nodes {
    pub(crate) names: Vec<String>,
    pub(crate) weights: Vec<u32>,
    pub(crate) total_weight: u64,
}

impl Nodes {
    pub(crate) fn validate(
        nodes: impl IntoIterator<Item = (String, u32)>,
        max: usize,
    ) -> Result<Nodes, Error> {
        let mut names = Vec::new();
        let mut weights = Vec::new();
        let mut seen = HashSet::new();
        let mut total_weight: u64 = 0;
        for (index, (name, weight)) in nodes.into_iter().enumerate() {
            if name.is_empty() {
                return Err(Error::EmptyNodeName { index });
            }
            if weight == 0 {
                return Err(Error::ZeroWeight { node: name });
            }
            if !seen.insert(name.clone()) {
                return Err(Error::DuplicateNode { node: name });
            }
            total_weight += u64::from(weight);
            names.push(name);
            weights.push(weight);
        }
        if names.is_empty() {
            return Err(Error::NoNodes);
        }
        if names.len() > max {
            return Err(Error::TooManyNodes {
                count: names.len(),
                max,
            });
        }
        Ok(Nodes {
            names,
            weights,
            total_weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(nodes: &[(&str, u32)], max: usize, expected: Result<u64, Error>) {
        let got =
            Nodes::validate(nodes.iter().map(|(n, w)| (n.to_string(), *w)), max).map(|n| n.total_weight);
        assert_eq!(got, expected, "{nodes:?}");
    }

    #[test]
    fn every_bad_list_has_its_error() {
        check(&[("a:1", 1), ("b:1", u32::MAX)], 10, Ok(1 + u64::from(u32::MAX)));
        check(&[], 10, Err(Error::NoNodes));
        check(&[("a:1", 1), ("", 1)], 10, Err(Error::EmptyNodeName { index: 1 }));
        check(&[("a:1", 0)], 10, Err(Error::ZeroWeight { node: "a:1".into() }));
        check(
            &[("a:1", 1), ("a:1", 2)],
            10,
            Err(Error::DuplicateNode { node: "a:1".into() }),
        );
        check(
            &[("a:1", 1), ("b:1", 1)],
            1,
            Err(Error::TooManyNodes { count: 2, max: 1 }),
        );
    }
}
