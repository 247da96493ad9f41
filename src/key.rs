//! Keys for cached function results, in the original `"{function}:{arg1}:{arg2}..."` format,
//! so `invalidate("get_user_permissions:123", "permissions")` hits what
//! `get_or_load` cached for `get_user_permissions(123)`.

use std::fmt::Display;

/// Builds `"{function}:{arg1}:{arg2}..."`.
///
/// ```
/// assert_eq!(hybrid_cache::key::function_key("get_user_permissions", [123]), "get_user_permissions:123");
/// assert_eq!(hybrid_cache::cache_key!("get_user_menu", 7, "admin"), "get_user_menu:7:admin");
/// ```
pub fn function_key<I, A>(function: &str, args: I) -> String
where
    I: IntoIterator<Item = A>,
    A: Display,
{
    let mut key = function.to_string();
    for a in args {
        key.push(':');
        key.push_str(&a.to_string());
    }
    key
}

/// `cache_key!("function", arg1, arg2, ...)` → `"function:arg1:arg2"` (args of any `Display` type).
#[macro_export]
macro_rules! cache_key {
    ($function:expr $(, $arg:expr)* $(,)?) => {{
        #[allow(unused_mut)]
        let mut key = ::std::string::String::from($function);
        $( key.push(':'); key.push_str(&$arg.to_string()); )*
        key
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_python_format() {
        assert_eq!(super::function_key("f", Vec::<u8>::new()), "f");
        assert_eq!(super::function_key("f", ["a", "b"]), "f:a:b");
        assert_eq!(
            crate::cache_key!("get_user_roles", 1, "x"),
            "get_user_roles:1:x"
        );
        assert_eq!(crate::cache_key!("noargs"), "noargs");
    }
}
