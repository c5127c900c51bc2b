//! One of a thing per modality: the mask-driven and the text-driven one, as
//! Collaborative Diffusion pairs them (conditions, noise predictors, dynamic
//! diffusers, their influence maps).

/// A value for each modality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerModality<T> {
    pub mask: T,
    pub text: T,
}

impl<T> PerModality<T> {
    /// Both values borrowed.
    pub fn as_ref(&self) -> PerModality<&T> {
        PerModality { mask: &self.mask, text: &self.text }
    }

    /// Each value with its counterpart in `other`.
    pub fn zip<U>(self, other: PerModality<U>) -> PerModality<(T, U)> {
        PerModality { mask: (self.mask, other.mask), text: (self.text, other.text) }
    }

    /// `f` of each value, the mask's first.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> PerModality<U> {
        PerModality { mask: f(self.mask), text: f(self.text) }
    }
}

impl<T: Send> PerModality<T> {
    /// `f` of both values side by side on rayon's pool: the two modalities are
    /// independent within a step, and at small sizes each is bound by
    /// per-operation overhead that one thread cannot share.
    pub fn par_map<U: Send>(self, f: impl Fn(T) -> U + Sync) -> PerModality<U> {
        let (mask, text) = rayon::join(|| f(self.mask), || f(self.text));
        PerModality { mask, text }
    }
}

impl<T, E> PerModality<Result<T, E>> {
    /// Both values, or the first error (the mask's before the text's).
    pub fn transpose(self) -> Result<PerModality<T>, E> {
        Ok(PerModality { mask: self.mask?, text: self.text? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_with_their_modality() {
        let pair = PerModality { mask: 2, text: 3 };
        assert_eq!(pair.map(|v| v * 10), PerModality { mask: 20, text: 30 });
        assert_eq!(pair.par_map(|v| v + 1), PerModality { mask: 3, text: 4 });
        assert_eq!(pair.as_ref().map(|v| *v), pair);
        assert_eq!(pair.zip(PerModality { mask: 'm', text: 't' }), PerModality { mask: (2, 'm'), text: (3, 't') });
        let results: PerModality<Result<i32, &str>> = PerModality { mask: Err("mask"), text: Err("text") };
        assert_eq!(results.transpose(), Err("mask"));
        assert_eq!(PerModality { mask: Ok::<_, ()>(1), text: Ok(2) }.transpose(), Ok(PerModality { mask: 1, text: 2 }));
    }
}
