//! PLACEHOLDER until the helper's version lands: the reverse role's host and path matching.

/// Host patterns of every site, matched to a site index.
#[derive(Debug, Default)]
pub struct HostTable {
    pats: Vec<(String, usize)>,
}

impl HostTable {
    pub fn new(sites: &[Vec<String>]) -> Result<HostTable, (usize, usize, String)> {
        let mut pats: Vec<(String, usize)> = Vec::new();
        for (i, hs) in sites.iter().enumerate() {
            for (j, h) in hs.iter().enumerate() {
                let mut h = h.to_ascii_lowercase();
                if h.starts_with("*.") {
                    h.remove(0);
                }
                if pats.iter().any(|p| p.0 == h) {
                    return Err((i, j, format!("{h} is listed twice")));
                }
                if h[1..].contains('*') {
                    return Err((i, j, "a wildcard only at the front".into()));
                }
                pats.push((h, i));
            }
        }
        Ok(HostTable { pats })
    }

    pub fn lookup(&self, host: &str) -> Option<usize> {
        let h = host.to_ascii_lowercase();
        let h = if h.starts_with('[') {
            h[..h.find(']').map_or(h.len(), |e| e + 1)].to_string()
        } else {
            h.rsplit_once(':').map_or(h.clone(), |(a, _)| a.to_string())
        };
        let h = h.strip_suffix('.').unwrap_or(&h).to_string();
        if let Some(p) = self.pats.iter().find(|p| p.0 == h) {
            return Some(p.1);
        }
        let mut best: Option<(usize, usize)> = None;
        for (p, i) in &self.pats {
            if p.starts_with('.')
                && (h.ends_with(p.as_str()) || h == p[1..])
                && best.is_none_or(|b| p.len() > b.0)
            {
                best = Some((p.len(), *i));
            }
        }
        best.map(|b| b.1)
            .or_else(|| self.pats.iter().find(|p| p.0 == "*").map(|p| p.1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    AboveRoot,
    NotAbsolute,
}

impl PathError {
    pub fn why(&self) -> &'static str {
        match self {
            PathError::AboveRoot => "the path climbs above the root",
            PathError::NotAbsolute => "the path does not start with /",
        }
    }
}

pub fn normalize_path(target: &str, out: &mut String) -> Result<(), PathError> {
    out.clear();
    if !target.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let (path, query) = match target.find('?') {
        Some(q) => (&target[..q], &target[q..]),
        None => (target, ""),
    };
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path[1..].split('/').collect();
    let n = parts.len();
    let mut trailing = false;
    for (k, s) in parts.iter().enumerate() {
        let d = s.replace("%2e", ".").replace("%2E", ".");
        if d == "." {
            trailing = k + 1 == n;
        } else if d == ".." {
            if segs.pop().is_none() {
                return Err(PathError::AboveRoot);
            }
            trailing = k + 1 == n;
        } else {
            segs.push(s);
            trailing = false;
        }
    }
    out.push('/');
    out.push_str(&segs.join("/"));
    if trailing && !segs.is_empty() {
        out.push('/');
    }
    out.push_str(query);
    Ok(())
}

#[derive(Debug, Default)]
pub struct RouteTable {
    prefixes: Vec<String>,
}

impl RouteTable {
    pub fn new(prefixes: &[String]) -> Result<RouteTable, (usize, String)> {
        let mut out: Vec<String> = Vec::new();
        for (i, p) in prefixes.iter().enumerate() {
            if !p.starts_with('/') {
                return Err((i, "must start with /".into()));
            }
            let p = if p.len() > 1 {
                p.trim_end_matches('/')
            } else {
                p
            };
            let p = if p.is_empty() { "/" } else { p };
            if out.iter().any(|o| o == p) {
                return Err((i, format!("{p} is listed twice")));
            }
            out.push(p.to_string());
        }
        Ok(RouteTable { prefixes: out })
    }

    pub fn lookup(&self, path: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, p) in self.prefixes.iter().enumerate() {
            let m = p == "/"
                || path == p
                || (path.starts_with(p.as_str()) && path.as_bytes()[p.len()] == b'/');
            if m && best.is_none_or(|b| p.len() > b.0) {
                best = Some((p.len(), i));
            }
        }
        best.map(|b| b.1)
    }
}

pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    let p = prefix.trim_end_matches('/');
    let rest = &path[p.len().min(path.len())..];
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}
