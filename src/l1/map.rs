//! [`CategoryMap`]: the node's categories by name.

use std::sync::Arc;

use super::L1Category;

/// The node's categories by name. A handful of entries: a linear scan comparing lengths
/// first beats hashing the name on every read.
#[derive(Debug, Default)]
pub struct CategoryMap {
    list: Vec<(String, Arc<L1Category>)>,
}

impl CategoryMap {
    pub fn new(list: impl IntoIterator<Item = (String, Arc<L1Category>)>) -> CategoryMap {
        let mut list: Vec<_> = list.into_iter().collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list.dedup_by(|a, b| a.0 == b.0);
        CategoryMap { list }
    }

    #[inline]
    pub fn get(&self, name: &str) -> Option<&Arc<L1Category>> {
        self.list.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.list.iter().map(|(n, _)| n)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<L1Category>> {
        self.list.iter().map(|(_, c)| c)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<L1Category>)> {
        self.list.iter().map(|(n, c)| (n, c))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl<'a> IntoIterator for &'a CategoryMap {
    type Item = (&'a String, &'a Arc<L1Category>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Arc<L1Category>)>,
        fn(&'a (String, Arc<L1Category>)) -> (&'a String, &'a Arc<L1Category>),
    >;
    fn into_iter(self) -> Self::IntoIter {
        fn pair(e: &(String, Arc<L1Category>)) -> (&String, &Arc<L1Category>) {
            (&e.0, &e.1)
        }
        self.list.iter().map(pair as fn(&'a _) -> _)
    }
}
