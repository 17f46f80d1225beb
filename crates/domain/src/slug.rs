//! Tenant slugs: derived from the business name, lower-case ASCII, unique per platform.

/// `"Ektola Jewellers & Sons"` → `"ektola-jewellers-sons"`. Never empty.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        let c = fold(c);
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "tenant".to_string()
    } else {
        out
    }
}

/// The n-th candidate for a slug that is taken: `name`, `name-2`, `name-3`…
pub fn candidate(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => 'a',
        'è' | 'é' | 'ê' | 'ë' | 'ē' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' => 'i',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ō' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' => 'u',
        'ç' => 'c',
        'ñ' => 'n',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Ektola Jewellers & Sons"), "ektola-jewellers-sons");
        assert_eq!(slugify("  Café  Réunion!! "), "cafe-reunion");
        assert_eq!(slugify("श्री"), "tenant");
        assert_eq!(candidate("shop", 1), "shop");
        assert_eq!(candidate("shop", 3), "shop-3");
    }
}
