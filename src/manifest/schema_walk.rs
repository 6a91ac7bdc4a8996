//! Reading the generated schema back to explain a validation error: which fields an
//! object allows, what a field is for (its description), which tags a tagged union
//! accepts. Only the subset of JSON Schema that schemars generates is understood:
//! local `$ref`s, `properties`, `items`, `oneOf` and `anyOf`.

use serde_json::Value;

/// A schema node inside the root schema it came from.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    root: &'a Value,
    /// The node as written where it is used, which may be a `$ref` with a description.
    site: &'a Value,
    /// The node after following `$ref`s.
    node: &'a Value,
}

impl<'a> Node<'a> {
    pub fn root(root: &'a Value) -> Self {
        Node { root, site: root, node: root }.resolved()
    }

    fn resolved(self) -> Self {
        let mut node = self.node;
        // Bounded: a `$ref` cycle in a generated schema would be a bug, not an input.
        for _ in 0..16 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else { break };
            let Some(target) = reference.strip_prefix('#').and_then(|p| self.root.pointer(p))
            else {
                break;
            };
            node = target;
        }
        Node { root: self.root, site: self.site, node }
    }

    fn with(self, node: &'a Value) -> Self {
        Node { root: self.root, site: node, node }.resolved()
    }

    /// The branches of a `oneOf`/`anyOf`, each resolved.
    pub fn branches(self) -> Vec<Node<'a>> {
        ["oneOf", "anyOf"]
            .iter()
            .filter_map(|key| self.node.get(*key).and_then(Value::as_array))
            .flatten()
            .map(|branch| self.with(branch))
            .collect()
    }

    /// The property shared by every branch that pins a constant, such as `type`, and the
    /// constant of each branch.
    pub fn tag(self) -> Option<(String, Vec<String>)> {
        let branches = self.branches();
        let first = branches.first()?;
        let properties = first.node.get("properties")?.as_object()?;
        properties.keys().find_map(|name| {
            let values: Option<Vec<String>> =
                branches.iter().map(|branch| branch.constant_of(name)).collect();
            values.map(|values| (name.clone(), values))
        })
    }

    fn constant_of(self, property: &str) -> Option<String> {
        let schema = self.node.get("properties")?.get(property)?;
        schema.get("const")?.as_str().map(str::to_string)
    }

    /// The branch of a tagged union chosen by `instance`'s tag, if it names one.
    pub fn branch_for(self, instance: &Value) -> Option<Node<'a>> {
        let (tag, values) = self.tag()?;
        let chosen = instance.get(&tag)?.as_str()?;
        let index = values.iter().position(|value| value == chosen)?;
        self.branches().into_iter().nth(index)
    }

    /// The schema of `key` in this object, looking through a tagged union when needed.
    pub fn property(self, key: &str, instance: &Value) -> Option<Node<'a>> {
        if let Some(found) = self.node.get("properties").and_then(|p| p.get(key)) {
            return Some(self.with(found));
        }
        self.branch_for(instance)?.property(key, instance)
    }

    /// The names of the properties this object allows.
    pub fn property_names(self, instance: &Value) -> Vec<String> {
        if let Some(properties) = self.node.get("properties").and_then(Value::as_object) {
            return properties.keys().cloned().collect();
        }
        self.branch_for(instance).map(|b| b.property_names(instance)).unwrap_or_default()
    }

    /// The schema of the array items.
    pub fn items(self) -> Option<Node<'a>> {
        self.node.get("items").map(|items| self.with(items))
    }

    /// Walks `pointer` down from this node, along the instance.
    pub fn at(self, pointer: &str, instance: &Value) -> Option<Node<'a>> {
        let mut node = self;
        let mut value = instance;
        for segment in pointer.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            node = match value {
                Value::Array(_) => node.items()?,
                _ => node.property(&segment, value)?,
            };
            value = match value {
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => value.get(&segment)?,
            };
        }
        Some(node)
    }

    /// The description where the node is used, else that of the definition.
    pub fn description(self) -> Option<&'a str> {
        let text = |node: &'a Value| node.get("description").and_then(Value::as_str);
        text(self.site).or_else(|| text(self.node))
    }
}

/// The first sentence of a description, which is what fits in a hint.
pub fn first_sentence(description: &str) -> String {
    let flat = description.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(end) => flat[..=end].to_string(),
        None => flat,
    }
}
