//! `limit` items per call over Klaviyo's cursor pages, and the cursors that resume them.
//!
//! `limit` is how many items the caller wants; Klaviyo's `page[size]` range differs per
//! endpoint (lists 1-10, flows 1-50, ...) and no request may go out of it, so a call follows
//! `links.next` until it has `limit` items or the collection ends. Each request asks for no
//! more than is still wanted, so a call normally ends on a page boundary and its `next-cursor`
//! is Klaviyo's own cursor, unchanged.
//!
//! A call can also end inside a page: `list-campaigns` without a channel merges the email and
//! SMS streams (Klaviyo's `messages.channel` filter takes one channel per request), and takes
//! from each only as far as the merge reached. Its cursor then records, per stream, Klaviyo's
//! cursor of the page it stopped in and how many items of that page were returned:
//!
//! ```text
//! ~<skip>.<klaviyo cursor, percent-encoded>[,<next stream>...]   a stream's position
//! ~...,x                                                        x: a stream that has ended
//! ```
//!
//! `~` marks our cursors: Klaviyo's are base64 (`next::id::...`), which never holds it, so a
//! cursor Klaviyo gave is still accepted as it is. An empty Klaviyo cursor is the first page.

use std::collections::VecDeque;

use percent_encoding::percent_decode_str;

use crate::http::{self, Request};
use crate::jsonapi::{self, Resource};
use crate::{Error, args};

/// Where one stream of a collection resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// Klaviyo's `page[cursor]` of the page to read; none for the first page.
    pub cursor: Option<String>,
    /// How many items at the start of that page were already returned.
    pub skip: usize,
}

impl Position {
    /// The start of a collection.
    pub const START: Position = Position {
        cursor: None,
        skip: 0,
    };
}

/// The first character of a cursor of ours (never in Klaviyo's base64 cursors).
const MARK: char = '~';

/// The cursor for these stream positions (`None` = that stream has ended); `None` when every
/// stream has ended. One stream resuming at a page boundary gives Klaviyo's own cursor.
pub fn encode(streams: &[Option<Position>]) -> Option<String> {
    if streams.iter().all(Option::is_none) {
        return None;
    }
    if let [
        Some(Position {
            cursor: Some(c),
            skip: 0,
        }),
    ] = streams
    {
        return Some(c.clone());
    }
    let parts: Vec<String> = streams
        .iter()
        .map(|s| match s {
            None => "x".to_string(),
            Some(p) => format!(
                "{}.{}",
                p.skip,
                http::encode(p.cursor.as_deref().unwrap_or(""))
            ),
        })
        .collect();
    Some(format!("{MARK}{}", parts.join(",")))
}

/// The positions of `count` streams a `page_cursor` resumes (its absence: each stream's
/// start). A cursor that is not one of ours is Klaviyo's, for a single stream.
pub fn decode(cursor: Option<String>, count: usize) -> Result<Vec<Option<Position>>, Error> {
    let Some(text) = args::cursor(cursor)? else {
        return Ok(vec![Some(Position::START); count]);
    };
    let bad = |why: &str| {
        args::invalid(
            "page_cursor",
            format!("page_cursor is not a cursor this function returned: {why}"),
        )
    };
    // A cursor resumes as many streams as the call that returned it read (list-campaigns: one
    // with a `channel`, two without).
    let other_call =
        "it was returned for other arguments (pass the same ones, e.g. the same `channel`)";
    let Some(ours) = text.strip_prefix(MARK) else {
        if count != 1 {
            return Err(bad(other_call));
        }
        return Ok(vec![Some(Position {
            cursor: Some(text),
            skip: 0,
        })]);
    };
    let parts: Vec<&str> = ours.split(',').collect();
    if parts.len() != count {
        return Err(bad(other_call));
    }
    parts
        .into_iter()
        .map(|part| {
            if part == "x" {
                return Ok(None);
            }
            let (skip, cursor) = part.split_once('.').ok_or_else(|| bad("malformed"))?;
            // A page holds at most 1000 items (the largest `page[size]`, get_events).
            let skip: usize = skip
                .parse()
                .ok()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| bad("malformed"))?;
            let cursor = percent_decode_str(cursor)
                .decode_utf8()
                .map_err(|_| bad("malformed"))?;
            Ok(Some(Position {
                cursor: (!cursor.is_empty()).then(|| cursor.into_owned()),
                skip,
            }))
        })
        .collect()
}

/// One page as a fetch gives it: the resources and Klaviyo's cursor of the next page.
pub type Fetched = (Vec<Resource>, Option<String>);

/// Sends one request for a stream's page: `(stream, cursor, size)`.
pub type Fetch<'a> = dyn FnMut(usize, Option<&str>, usize) -> Result<Fetched, Error> + 'a;

/// One stream of a collection being read: the page it is in and what is left of it.
pub struct Stream {
    /// Klaviyo's cursor of the current page (none: the first page).
    cursor: Option<String>,
    /// Items of the current page returned so far (including those skipped on resuming).
    used: usize,
    /// Whether the current page has been fetched.
    loaded: bool,
    /// The current page's items not returned yet.
    items: VecDeque<Resource>,
    /// Klaviyo's cursor of the page after the current one.
    next: Option<String>,
    /// The collection has no more items.
    ended: bool,
    /// A page came back empty but with a `links.next`: stop this call there, so that one
    /// call never follows an unbounded chain of empty pages.
    stalled: bool,
}

impl Stream {
    /// A stream resuming at `position` (`None`: it has ended).
    pub fn new(position: Option<Position>) -> Self {
        let (cursor, used, ended) = match position {
            Some(p) => (p.cursor, p.skip, false),
            None => (None, 0, true),
        };
        Stream {
            cursor,
            used,
            loaded: false,
            items: VecDeque::new(),
            next: None,
            ended,
            stalled: false,
        }
    }

    /// Make sure the next item is at hand, fetching pages as needed; false when there is
    /// none (for now, when stalled). `wanted` is how many more items the call may return, so
    /// that a page never asks for more than can be used; `max` is the endpoint's largest
    /// `page[size]`.
    fn ready(
        &mut self,
        stream: usize,
        wanted: usize,
        max: usize,
        fetch: &mut Fetch<'_>,
    ) -> Result<bool, Error> {
        while self.items.is_empty() && !self.ended && !self.stalled {
            if self.loaded {
                // The page is used up: Klaviyo's `links.next` is absent on the last page.
                match self.next.take() {
                    Some(next) => {
                        self.cursor = Some(next);
                        self.used = 0;
                        self.loaded = false;
                    }
                    None => self.ended = true,
                }
                continue;
            }
            let size = (self.used + wanted).clamp(1, max);
            let (page, next) = fetch(stream, self.cursor.as_deref(), size)?;
            self.stalled = self.used == 0 && page.is_empty() && next.is_some();
            self.items = page.into_iter().skip(self.used).collect();
            self.next = next;
            self.loaded = true;
        }
        Ok(!self.items.is_empty())
    }

    /// Where the next call resumes (`None`: the stream has ended).
    pub fn position(&self) -> Option<Position> {
        if self.ended {
            return None;
        }
        if !self.loaded || !self.items.is_empty() {
            return Some(Position {
                cursor: self.cursor.clone(),
                skip: self.used,
            });
        }
        self.next.as_ref().map(|n| Position {
            cursor: Some(n.clone()),
            skip: 0,
        })
    }
}

/// Take up to `limit` items from `streams`, merged: each step takes the first item for
/// which `before` holds against the other streams' next items (ties go to the earlier
/// stream). With one stream, that stream's items in order. Each item comes with the index
/// of its stream.
pub fn merge(
    streams: &mut [Stream],
    limit: usize,
    max: usize,
    fetch: &mut Fetch<'_>,
    before: &dyn Fn(&Resource, &Resource) -> bool,
) -> Result<Vec<(usize, Resource)>, Error> {
    let mut out = Vec::new();
    while out.len() < limit {
        let wanted = limit - out.len();
        let mut best: Option<usize> = None;
        for i in 0..streams.len() {
            if !streams[i].ready(i, wanted, max, fetch)? {
                if streams[i].stalled {
                    // What this stream holds next is unknown, so nothing can be merged.
                    return Ok(out);
                }
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => before(&streams[i].items[0], &streams[b].items[0]),
            };
            if better {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let s = &mut streams[b];
        out.extend(s.items.pop_front().map(|r| (b, r)));
        s.used += 1;
    }
    Ok(out)
}

/// One collection endpoint read `limit` items at a time: `base` is its request without the
/// page parameters, `max` its largest `page[size]`, `page_cursor` the caller's cursor.
/// Returns the resources and the cursor after the last one.
pub fn collect(
    base: &Request,
    limit: usize,
    max: u32,
    page_cursor: Option<String>,
) -> Result<(Vec<Resource>, Option<String>), Error> {
    let mut streams = [Stream::new(decode(page_cursor, 1)?.remove(0))];
    let items = merge(
        &mut streams,
        limit,
        max as usize,
        &mut |_, cursor, size| jsonapi::page(http::send(&page_request(base, cursor, size))?),
        &|_, _| false,
    )?;
    let items = items.into_iter().map(|(_, r)| r).collect();
    Ok((items, encode(&[streams[0].position()])))
}

/// `base` with `page[size]` and, past the first page, `page[cursor]`.
pub fn page_request(base: &Request, cursor: Option<&str>, size: usize) -> Request {
    base.clone()
        .param("page[size]", size.to_string())
        .param_opt("page[cursor]", cursor.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cursor: Option<&str>, skip: usize) -> Option<Position> {
        Some(Position {
            cursor: cursor.map(str::to_owned),
            skip,
        })
    }

    #[test]
    fn klaviyo_cursors_pass_through_unchanged() {
        let klaviyo = "bmV4dDo6aWQ6OjIwODEwNDk=";
        assert_eq!(
            encode(&[at(Some(klaviyo), 0)]).as_deref(),
            Some(klaviyo),
            "a page boundary gives Klaviyo's own cursor"
        );
        assert_eq!(
            decode(Some(klaviyo.into()), 1).unwrap(),
            [at(Some(klaviyo), 0)]
        );
        assert_eq!(encode(&[None]), None);
        assert_eq!(encode(&[None, None]), None);
        assert_eq!(decode(None, 2).unwrap(), [at(None, 0), at(None, 0)]);
    }

    #[test]
    fn positions_inside_pages_round_trip() {
        for streams in [
            vec![at(Some("bmV4dDo6aWQ6OjIw"), 7)],
            vec![at(None, 3)],
            vec![at(None, 4), at(Some("a+b/c=,x.y~z"), 16)],
            vec![at(Some("bmV4dA=="), 0), None],
            vec![None, at(None, 1)],
        ] {
            let text = encode(&streams).expect("a cursor");
            assert!(text.starts_with('~'), "{text}");
            assert_eq!(decode(Some(text.clone()), streams.len()).unwrap(), streams);
        }
        assert_eq!(
            encode(&[at(None, 4), at(Some("a,b"), 16)]).as_deref(),
            Some("~4.,16.a%2Cb")
        );
    }

    #[test]
    fn bad_cursors_are_invalid_arguments() {
        let field = |r: Result<Vec<Option<Position>>, Error>| r.unwrap_err().field.unwrap();
        assert_eq!(field(decode(Some(" ".into()), 1)), "page_cursor");
        for bad in ["~", "~3", "~a.b", "~1.x,2.y", "~99999.c", "~1.%FF"] {
            assert_eq!(field(decode(Some(bad.into()), 1)), "page_cursor", "{bad}");
        }
        // A single stream's cursor cannot resume a merge, nor the other way round.
        assert_eq!(field(decode(Some("bmV4dA==".into()), 2)), "page_cursor");
        assert_eq!(field(decode(Some("~1.a".into()), 2)), "page_cursor");
        assert_eq!(field(decode(Some("~1.a,x".into()), 1)), "page_cursor");
    }

    /// A fake endpoint over the ids `0..total`: Klaviyo-like cursors are the offset as text.
    fn endpoint(ids: Vec<i64>) -> impl FnMut(Option<&str>, usize) -> Result<Fetched, Error> {
        move |cursor, size| {
            let start: usize = cursor.map_or(0, |c| c.parse().unwrap());
            let end = (start + size).min(ids.len());
            let next = (end < ids.len()).then(|| end.to_string());
            let page = ids[start..end]
                .iter()
                .map(|id| Resource::parse(&format!(r#"{{"id": "{id}"}}"#)).unwrap())
                .collect();
            Ok((page, next))
        }
    }

    fn ids(items: &[(usize, Resource)]) -> Vec<i64> {
        items.iter().map(|(_, r)| r.id.parse().unwrap()).collect()
    }

    fn take(
        total: i64,
        max: usize,
        limit: usize,
        from: Option<Position>,
    ) -> (Vec<i64>, Vec<usize>, Option<Position>) {
        let mut sizes = Vec::new();
        let mut fetch = endpoint((0..total).collect());
        let mut streams = [Stream::new(from)];
        let items = merge(
            &mut streams,
            limit,
            max,
            &mut |_, c, s| {
                sizes.push(s);
                fetch(c, s)
            },
            &|_, _| false,
        )
        .unwrap();
        (ids(&items), sizes, streams[0].position())
    }

    #[test]
    fn small_pages_are_followed_and_never_oversized() {
        // 25 lists, pages of at most 10: limit 50 takes all in 10 + 10 + 10.
        let (items, sizes, next) = take(25, 10, 50, at(None, 0));
        assert_eq!(items, (0..25).collect::<Vec<_>>());
        assert_eq!(sizes, [10, 10, 10]);
        assert_eq!(next, None);
        // The default 20 ends on a page boundary: Klaviyo's cursor of the rest.
        let (items, sizes, next) = take(25, 10, 20, at(None, 0));
        assert_eq!(items.len(), 20);
        assert_eq!(sizes, [10, 10]);
        assert_eq!(next, at(Some("20"), 0));
        let (rest, _, next) = take(25, 10, 20, next);
        assert_eq!(rest, (20..25).collect::<Vec<_>>());
        assert_eq!(next, None);
        // Pages ask only for what is still wanted.
        let (_, sizes, _) = take(100, 50, 7, at(None, 0));
        assert_eq!(sizes, [7]);
        // Resuming inside a page skips what was returned.
        let (items, sizes, next) = take(100, 50, 5, at(Some("10"), 3));
        assert_eq!(items, [13, 14, 15, 16, 17]);
        assert_eq!(sizes, [8]);
        assert_eq!(next, at(Some("18"), 0));
    }

    #[test]
    fn merged_streams_resume_exactly_after_the_last_item() {
        // Two sorted streams (evens and odds, descending), merged 3 at a time in pages of
        // at most 4.
        let mut evens = endpoint((0..10).rev().filter(|n| n % 2 == 0).collect());
        let mut odds = endpoint((0..10).rev().filter(|n| n % 2 == 1).collect());
        let mut cursor: Option<String> = None;
        let mut seen = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let mut streams: Vec<Stream> = decode(cursor.take(), 2)
                .unwrap()
                .into_iter()
                .map(Stream::new)
                .collect();
            let items = merge(
                &mut streams,
                3,
                4,
                &mut |i, c, s| if i == 0 { evens(c, s) } else { odds(c, s) },
                &|a, b| a.id.parse::<i64>().unwrap() > b.id.parse::<i64>().unwrap(),
            )
            .unwrap();
            seen.extend(ids(&items));
            let positions: Vec<_> = streams.iter().map(Stream::position).collect();
            match encode(&positions) {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (0..10).rev().collect::<Vec<_>>());
        assert_eq!(calls, 4);
    }

    #[test]
    fn an_empty_page_with_a_next_link_ends_the_call() {
        let mut streams = [Stream::new(at(None, 0))];
        let items = merge(
            &mut streams,
            5,
            10,
            &mut |_, _, _| Ok((Vec::new(), Some("again".into()))),
            &|_, _| false,
        )
        .unwrap();
        assert!(items.is_empty());
        assert_eq!(streams[0].position(), at(Some("again"), 0));
    }
}
