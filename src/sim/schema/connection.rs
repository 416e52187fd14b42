//! Relay connections: graphene-style array cursors, `first`/`last` capped at 50, `offset` added to `after`.

use super::*;

#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    pub(in crate::sim) has_next_page: bool,
    pub(in crate::sim) has_previous_page: bool,
    pub(in crate::sim) start_cursor: Option<String>,
    pub(in crate::sim) end_cursor: Option<String>,
}

/// A page before it becomes one of the concrete connection types below.
pub struct Page<T> {
    pub(in crate::sim) edges: Vec<(T, String)>,
    pub(in crate::sim) page_info: PageInfo,
    pub(in crate::sim) count: i32,
}

/// One `XxxEdge { node cursor }` and `XxxConnection { edges pageInfo count }` pair per node type.
macro_rules! connection_types {
    ($($node:ty => $edge:ident, $conn:ident;)*) => {$(
        #[derive(SimpleObject)]
        pub struct $edge {
            node: $node,
            cursor: String,
        }

        #[derive(SimpleObject)]
        pub struct $conn {
            edges: Vec<$edge>,
            page_info: PageInfo,
            count: i32,
        }

        impl From<Page<$node>> for $conn {
            fn from(page: Page<$node>) -> Self {
                $conn {
                    edges: page.edges.into_iter().map(|(node, cursor)| $edge { node, cursor }).collect(),
                    page_info: page.page_info,
                    count: page.count,
                }
            }
        }
    )*};
}

connection_types! {
    UserNode => UserEdge, UserConnection;
    GroupNode => GroupEdge, GroupConnection;
    TrainingNode => TrainingEdge, TrainingConnection;
    PortfolioReportItem => PortfolioReportEdge, PortfolioReportConnection;
    CertificateNode => CertificateEdge, CertificateConnection;
}

/// Paging arguments of one connection field.
#[derive(Debug, Default)]
pub(in crate::sim) struct PageArgs {
    pub(in crate::sim) first: Option<i32>,
    pub(in crate::sim) after: Option<String>,
    pub(in crate::sim) last: Option<i32>,
    pub(in crate::sim) before: Option<String>,
    pub(in crate::sim) offset: Option<i32>,
}

pub(in crate::sim) fn cursor(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("arrayconnection:{index}"))
}

pub(in crate::sim) fn parse_cursor(text: &str) -> Result<usize> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix("arrayconnection:")
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| Error::new(format!("Invalid cursor `{text}`")))
}

/// The `[start, end)` window of a connection over `count` rows (graphene-django semantics).
pub(in crate::sim) fn window(field: &str, count: usize, args: &PageArgs) -> Result<(usize, usize)> {
    for (name, value) in [("first", args.first), ("last", args.last)] {
        match value {
            Some(n) if n < 0 => {
                return Err(Error::new(format!(
                    "Argument `{name}` on `{field}` must be non-negative"
                )));
            }
            Some(n) if n as usize > MAX_PAGE => {
                return Err(Error::new(format!(
                    "Requesting {n} records on the `{field}` connection exceeds the `{name}` limit of {MAX_PAGE} records."
                )));
            }
            _ => {}
        }
    }
    let mut start = match &args.after {
        Some(c) => parse_cursor(c)? + 1,
        None => 0,
    };
    if let Some(offset) = args.offset {
        if offset < 0 {
            return Err(Error::new(format!(
                "Argument `offset` on `{field}` must be non-negative"
            )));
        }
        start += offset as usize;
    }
    let mut end = match &args.before {
        Some(c) => parse_cursor(c)?.min(count),
        None => count,
    };
    start = start.min(count);
    end = end.max(start);
    if let Some(first) = args.first {
        end = end.min(start + first as usize);
    }
    if let Some(last) = args.last {
        start = start.max(end.saturating_sub(last as usize));
    }
    if args.first.is_none() && args.last.is_none() {
        end = end.min(start + MAX_PAGE);
    }
    Ok((start, end))
}

pub(in crate::sim) fn connection<T>(
    field: &str,
    count: usize,
    args: &PageArgs,
    node: impl Fn(usize) -> T,
) -> Result<Page<T>> {
    let (start, end) = window(field, count, args)?;
    let edges: Vec<(T, String)> = (start..end).map(|i| (node(i), cursor(i))).collect();
    Ok(Page {
        page_info: PageInfo {
            has_next_page: end < count,
            has_previous_page: start > 0,
            start_cursor: (start < end).then(|| cursor(start)),
            end_cursor: (start < end).then(|| cursor(end - 1)),
        },
        edges,
        count: count as i32,
    })
}
