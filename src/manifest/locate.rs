//! Line and column of every node of a YAML file, by JSON pointer.
//!
//! The JSON Schema validator reports problems at JSON pointers (`/batching/size`); users
//! need `file:line:column`. serde_yaml does not expose positions, so the file is read a
//! second time with yaml-rust2's event parser, which marks where each key and value
//! starts.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };
}

/// Where the key and the value of each node start, by JSON pointer (`""` is the root).
#[derive(Debug, Default)]
pub struct Locations {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Locations {
    /// Indexes a YAML text. A text that does not parse yields what was read before the
    /// error; the syntax error itself is reported by the loader.
    pub fn index(text: &str) -> Locations {
        let mut indexer = Indexer::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut indexer, false);
        indexer.locations
    }

    /// Where the node at `pointer` is best pointed at: its key when it has one (a user
    /// reads `size: 5000` from the key), else its value, else the nearest ancestor.
    pub fn find(&self, pointer: &str) -> Position {
        let mut pointer = pointer;
        loop {
            if let Some(position) = self.keys.get(pointer).or(self.values.get(pointer)) {
                return *position;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return Position::START,
            }
        }
    }

    /// Where the value at `pointer` starts, when it exists.
    pub fn value(&self, pointer: &str) -> Option<Position> {
        self.values.get(pointer).copied()
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A collection being read. Its own position is taken from its first child: the parser
/// marks the start of a block collection after its first key, not where it begins.
enum Frame {
    Mapping { pointer: String, key: Option<String>, placed: bool },
    Sequence { pointer: String, next: usize, placed: bool },
}

#[derive(Default)]
struct Indexer {
    locations: Locations,
    stack: Vec<Frame>,
}

impl Indexer {
    /// The pointer of a node that starts now, or `None` when it is a mapping key. Scalars
    /// are placed at once; a collection (`collection`) waits for its first child, and the
    /// root keeps the start of the file.
    fn place_node(
        &mut self,
        mark: Marker,
        key_text: Option<&str>,
        collection: bool,
    ) -> Option<String> {
        // yaml-rust2's lines are 1-based and its columns 0-based.
        let position = Position { line: mark.line().max(1), column: mark.col() + 1 };
        let values = &mut self.locations.values;
        let Some(frame) = self.stack.last_mut() else {
            values.insert(String::new(), Position::START);
            return Some(String::new());
        };
        match frame {
            Frame::Sequence { pointer, placed, .. } | Frame::Mapping { pointer, placed, .. }
                if !*placed =>
            {
                *placed = true;
                if !pointer.is_empty() {
                    values.insert(pointer.clone(), position);
                }
            }
            _ => {}
        }
        match frame {
            Frame::Sequence { pointer, next, .. } => {
                let child = format!("{pointer}/{next}");
                *next += 1;
                if !collection {
                    values.insert(child.clone(), position);
                }
                Some(child)
            }
            Frame::Mapping { pointer, key, .. } => match key.take() {
                None => {
                    // A key: remember it; complex (non-scalar) keys get an empty name.
                    let name = key_text.unwrap_or_default().to_string();
                    let child = format!("{pointer}/{}", escape_segment(&name));
                    self.locations.keys.insert(child, position);
                    *key = Some(name);
                    None
                }
                Some(name) => {
                    let child = format!("{pointer}/{}", escape_segment(&name));
                    if !collection {
                        values.insert(child.clone(), position);
                    }
                    Some(child)
                }
            },
        }
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) => {
                self.place_node(mark, Some(&text), false);
            }
            Event::Alias(_) => {
                self.place_node(mark, None, false);
            }
            Event::MappingStart(..) => {
                let pointer = self.place_node(mark, None, true).unwrap_or_default();
                self.stack.push(Frame::Mapping { pointer, key: None, placed: false });
            }
            Event::SequenceStart(..) => {
                let pointer = self.place_node(mark, None, true).unwrap_or_default();
                self.stack.push(Frame::Sequence { pointer, next: 0, placed: false });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# a comment
name: orders
batching:
  size: 5000
triggers:
  - added
  - changed
";

    #[test]
    fn points_at_keys_and_sequence_items() {
        let locations = Locations::index(TEXT);
        assert_eq!(locations.find("/name"), Position { line: 2, column: 1 });
        assert_eq!(locations.find("/batching/size"), Position { line: 4, column: 3 });
        assert_eq!(locations.value("/batching/size"), Some(Position { line: 4, column: 9 }));
        assert_eq!(locations.find("/triggers/1"), Position { line: 7, column: 5 });
        assert_eq!(locations.value("/batching"), Some(Position { line: 4, column: 3 }));
        assert_eq!(locations.value("/triggers"), Some(Position { line: 6, column: 5 }));
    }

    #[test]
    fn a_missing_node_falls_back_to_its_parent() {
        let locations = Locations::index(TEXT);
        assert_eq!(locations.find("/batching/max_request_bytes"), Position { line: 3, column: 1 });
        assert_eq!(locations.find("/nowhere/at/all"), Position::START);
    }
}
