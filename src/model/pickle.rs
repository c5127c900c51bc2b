//! A restricted pickle reader for PyTorch checkpoints.
//!
//! A `.ckpt` needs only a small part of pickle: dicts, lists, tuples,
//! strings, numbers, globals as names and a few calls to rebuild tensors. This
//! reader decodes exactly that into inert data and never imports or runs
//! anything: a global is a pair of names, a call (REDUCE, NEWOBJ) a record of
//! what would have been called. Only [`crate::model::torch_zip`] gives meaning
//! to a whitelisted few of them.
//!
//! It is written for hostile files: objects live in one arena and refer to
//! each other by index, so a memo fetch shares instead of copying (no
//! doubling bombs), nothing recurses (neither reading nor dropping, however
//! deep the nesting), the stack and mark depth are bounded, and every
//! allocation is charged against a budget set by the pickle's length.

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum PickleError {
    #[error("the pickle ends in the middle of an opcode at byte {0}")]
    Truncated(usize),
    #[error("the pickle has no STOP opcode")]
    NoStop,
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {at}")]
    Unsupported { opcode: u8, at: usize },
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
    #[error("the pickle needs more memory than a file of its size can ({0} bytes); it is refused as a memory bomb")]
    Budget(usize),
    #[error("the pickle nests deeper than {0} levels")]
    TooDeep(usize),
}

/// A value on the stack or inside a container: small scalars inline, everything else in the arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Node(usize),
}

#[derive(Debug)]
pub enum Node {
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Entries in file order; a later duplicate key wins, as in Python.
    Dict(Vec<(Value, Value)>),
    /// A global's module and name, boxed to keep every node small.
    Global(Box<(String, String)>),
    /// What REDUCE or NEWOBJ would have called, never called.
    Call { callable: Value, args: Value },
    /// What BINPERSID would have asked the unpickler to load.
    PersistentId(Value),
}

/// A decoded pickle: the arena and the value STOP returned.
#[derive(Debug)]
pub struct Pickle {
    nodes: Vec<Node>,
    pub root: Value,
}

impl Pickle {
    pub fn node(&self, value: Value) -> Option<&Node> {
        match value {
            Value::Node(i) => self.nodes.get(i),
            _ => None,
        }
    }

    pub fn str(&self, value: Value) -> Option<&str> {
        match self.node(value) {
            Some(Node::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn items(&self, value: Value) -> Option<&[Value]> {
        match self.node(value) {
            Some(Node::Tuple(items) | Node::List(items)) => Some(items),
            _ => None,
        }
    }

    pub fn global(&self, value: Value) -> Option<(&str, &str)> {
        match self.node(value) {
            Some(Node::Global(global)) => Some((&global.0, &global.1)),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict (the last one if repeated).
    pub fn dict_get(&self, dict: Value, key: &str) -> Option<Value> {
        match self.node(dict) {
            Some(Node::Dict(entries)) => entries.iter().rev().find(|(k, _)| self.str(*k) == Some(key)).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Deepest MARK nesting accepted; a checkpoint uses three or four.
pub const MAX_MARK_DEPTH: usize = 1000;
/// Most values on the stack at once; pickle writes containers in batches of 1000 items.
pub const MAX_STACK: usize = 100_000;

/// Bytes of bookkeeping a pickle of `len` bytes may allocate: a checkpoint's
/// pickle needs about three times its length. The fixed part lets a small
/// file nest deeply (a level costs a byte of file and about 56 bytes here).
fn budget_for(len: usize) -> usize {
    len.saturating_mul(8).saturating_add(64 << 20)
}

/// Decodes `data`, which must be a complete pickle (protocols 2 to 5, the subset torch writes).
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    let mut m = Machine { data, at: 0, nodes: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), spent: 0, budget: budget_for(data.len()) };
    let root = m.run()?;
    Ok(Pickle { nodes: m.nodes, root })
}

struct Machine<'a> {
    data: &'a [u8],
    at: usize,
    nodes: Vec<Node>,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    spent: usize,
    budget: usize,
}

const NODE_COST: usize = std::mem::size_of::<Node>();
const VALUE_COST: usize = std::mem::size_of::<Value>();

impl<'a> Machine<'a> {
    fn malformed(&self, what: &'static str) -> PickleError {
        PickleError::Malformed { at: self.at, what }
    }

    fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > self.budget {
            return Err(PickleError::Budget(self.budget));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.data.len()).ok_or(PickleError::Truncated(self.at))?;
        let data: &'a [u8] = self.data;
        let bytes = &data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A length prefix, checked against what is left of the data before anything is allocated.
    fn len_of(&mut self, prefix: usize) -> Result<usize, PickleError> {
        let len = match prefix {
            1 => self.u8()? as u64,
            4 => u32::from_le_bytes(self.le()?) as u64,
            _ => u64::from_le_bytes(self.le()?),
        };
        if len > (self.data.len() - self.at) as u64 {
            return Err(PickleError::Truncated(self.at));
        }
        Ok(len as usize)
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated(self.at))?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| self.malformed("a global's name is not UTF-8"))?.to_string();
        self.at += end + 1;
        Ok(line)
    }

    fn alloc(&mut self, node: Node) -> Result<Value, PickleError> {
        let payload = match &node {
            Node::Str(s) => s.len(),
            Node::Bytes(b) => b.len(),
            Node::Tuple(v) | Node::List(v) => v.len() * VALUE_COST,
            Node::Dict(v) => v.len() * 2 * VALUE_COST,
            Node::Global(global) => std::mem::size_of::<(String, String)>() + global.0.len() + global.1.len(),
            Node::Call { .. } | Node::PersistentId(_) => 0,
        };
        self.charge(NODE_COST + payload)?;
        self.nodes.push(node);
        Ok(Value::Node(self.nodes.len() - 1))
    }

    fn push(&mut self, value: Value) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(PickleError::TooDeep(MAX_STACK));
        }
        self.stack.push(value);
        Ok(())
    }

    fn push_node(&mut self, node: Node) -> Result<(), PickleError> {
        let value = self.alloc(node)?;
        self.push(value)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) {
            return Err(self.malformed("an opcode takes more values than the stack holds above its mark"));
        }
        self.stack.pop().ok_or_else(|| self.malformed("pop from an empty stack"))
    }

    fn top(&self) -> Result<Value, PickleError> {
        self.stack.last().copied().ok_or_else(|| self.malformed("the stack is empty"))
    }

    /// Everything above the last MARK, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.malformed("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark))
    }

    fn tuple_of(&mut self, n: usize) -> Result<(), PickleError> {
        let mut items = vec![Value::None; n];
        for slot in items.iter_mut().rev() {
            *slot = self.pop()?;
        }
        self.push_node(Node::Tuple(items))
    }

    fn string(&mut self, len: usize) -> Result<(), PickleError> {
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| PickleError::Malformed { at: self.at, what: "a string is not UTF-8" })?.to_string();
        self.push_node(Node::Str(s))
    }

    fn bytes(&mut self, len: usize) -> Result<(), PickleError> {
        let bytes = self.take(len)?.to_vec();
        self.push_node(Node::Bytes(bytes))
    }

    fn memo_put(&mut self, id: u32) -> Result<(), PickleError> {
        let value = self.top()?;
        if self.memo.insert(id, value).is_none() {
            self.charge(2 * VALUE_COST)?;
        }
        Ok(())
    }

    fn memo_get(&mut self, id: u32) -> Result<(), PickleError> {
        let value = *self.memo.get(&id).ok_or_else(|| self.malformed("a memo fetch of an entry never stored"))?;
        self.push(value)
    }

    /// Appends `items` to the list or dict (`pairs`) at `target`.
    fn extend(&mut self, target: Value, items: Vec<Value>, pairs: bool) -> Result<(), PickleError> {
        self.charge(items.len() * VALUE_COST)?;
        let at = self.at;
        let node = match target {
            Value::Node(i) => self.nodes.get_mut(i),
            _ => None,
        };
        match (node, pairs) {
            (Some(Node::List(list)), false) => list.extend(items),
            (Some(Node::Dict(dict)), true) if items.len().is_multiple_of(2) => {
                dict.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
            }
            (Some(Node::Dict(_)), true) => return Err(PickleError::Malformed { at, what: "SETITEMS with a key and no value" }),
            _ => return Err(PickleError::Malformed { at, what: "items added to something that is not a list or dict" }),
        }
        Ok(())
    }

    /// REDUCE and NEWOBJ: an `OrderedDict()` becomes a dict (later SETITEMS fill
    /// it); any other call is recorded, not made.
    fn call(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let empty_args = matches!(self.node_ref(args), Some(Node::Tuple(a)) if a.is_empty());
        let node = match self.node_ref(callable) {
            Some(Node::Global(global)) if global.0 == "collections" && global.1 == "OrderedDict" && empty_args => Node::Dict(Vec::new()),
            _ => Node::Call { callable, args },
        };
        self.push_node(node)
    }

    fn node_ref(&self, value: Value) -> Option<&Node> {
        match value {
            Value::Node(i) => self.nodes.get(i),
            _ => None,
        }
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.at;
            let Ok(op) = self.u8() else { return Err(PickleError::NoStop) };
            match op {
                0x80 => {
                    self.u8()?; // PROTO: any version; unknown opcodes are refused one by one
                }
                0x95 => {
                    self.take(8)?; // FRAME: a hint for buffering, nothing to decode
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_MARK_DEPTH {
                        return Err(PickleError::TooDeep(MAX_MARK_DEPTH));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.push(top)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?;
                }
                0x8a => {
                    // LONG1: a little-endian two's-complement integer of up to 8 bytes.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.malformed("an integer wider than 64 bits"));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let len = self.len_of(4)?;
                    self.string(len)?;
                }
                0x8c => {
                    let len = self.len_of(1)?;
                    self.string(len)?;
                }
                0x8d => {
                    let len = self.len_of(8)?;
                    self.string(len)?;
                }
                b'B' => {
                    let len = self.len_of(4)?;
                    self.bytes(len)?;
                }
                b'C' => {
                    let len = self.len_of(1)?;
                    self.bytes(len)?;
                }
                0x8e => {
                    let len = self.len_of(8)?;
                    self.bytes(len)?;
                }
                b')' => self.push_node(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items))?;
                }
                0x85 => self.tuple_of(1)?,
                0x86 => self.tuple_of(2)?,
                0x87 => self.tuple_of(3)?,
                b']' => self.push_node(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.extend(list, vec![item], false)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend(list, items, false)?;
                }
                b'}' => self.push_node(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.alloc(Node::Dict(Vec::new()))?;
                    self.extend(dict, items, true)?;
                    self.push(dict)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.extend(dict, vec![key, value], true)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.extend(dict, items, true)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_node(Node::Global(Box::new((module, name))))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(Node::Str(module)), Some(Node::Str(name))) = (self.node_ref(module), self.node_ref(name)) else {
                        return Err(self.malformed("STACK_GLOBAL needs two strings"));
                    };
                    let global = Node::Global(Box::new((module.clone(), name.clone())));
                    self.push_node(global)?;
                }
                b'R' | 0x81 => self.call()?,
                b'b' => {
                    // BUILD would set the object's state; the state is dropped unread.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.push_node(Node::PersistentId(id))?;
                }
                b'h' => {
                    let id = self.u8()? as u32;
                    self.memo_get(id)?;
                }
                b'j' => {
                    let id = u32::from_le_bytes(self.le()?);
                    self.memo_get(id)?;
                }
                b'q' => {
                    let id = self.u8()? as u32;
                    self.memo_put(id)?;
                }
                b'r' => {
                    let id = u32::from_le_bytes(self.le()?);
                    self.memo_put(id)?;
                }
                0x94 => {
                    let id = u32::try_from(self.memo.len()).map_err(|_| self.malformed("memo full"))?;
                    self.memo_put(id)?;
                }
                opcode => return Err(PickleError::Unsupported { opcode, at }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dicts_lists_tuples_and_numbers() {
        // {'a': [1, 2.5, None], 'b': ('x', True)} as pickle protocol 2 writes it.
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00Ne\
X\x01\x00\x00\x00bq\x03X\x01\x00\x00\x00xq\x04\x88\x86q\x05u.";
        let p = parse(data).unwrap();
        let a = p.dict_get(p.root, "a").unwrap();
        assert_eq!(p.items(a).unwrap(), &[Value::Int(1), Value::Float(2.5), Value::None]);
        let b = p.items(p.dict_get(p.root, "b").unwrap()).unwrap();
        assert_eq!((p.str(b[0]), b[1]), (Some("x"), Value::Bool(true)));
    }

    #[test]
    fn a_repeated_key_keeps_the_last_value_as_python_does() {
        let data = b"\x80\x02}(X\x01\x00\x00\x00kK\x01X\x01\x00\x00\x00kK\x02u.";
        let p = parse(data).unwrap();
        assert_eq!(p.dict_get(p.root, "k"), Some(Value::Int(2)));
    }

    #[test]
    fn calls_are_recorded_never_made() {
        // os.system('touch pwned') through REDUCE, and through STACK_GLOBAL + NEWOBJ.
        let reduce = b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00touch pwned\x85R.";
        let stack_global = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0btouch pwned\x85\x81.";
        for data in [&reduce[..], &stack_global[..]] {
            let p = parse(data).unwrap();
            let Some(Node::Call { callable, args }) = p.node(p.root) else { panic!("{:?}", p.root) };
            assert_eq!(p.global(*callable), Some(("os", "system")));
            assert_eq!(p.str(p.items(*args).unwrap()[0]), Some("touch pwned"));
        }
        assert!(!std::path::Path::new("pwned").exists());
    }

    #[test]
    fn opcodes_outside_the_subset_are_refused() {
        // INST and OBJ build objects by name; EXT1 reads the copyreg registry.
        for (data, opcode) in [(&b"\x80\x02(ios\nsystem\n."[..], b'i'), (b"\x80\x02(o.", b'o'), (b"\x80\x02\x82\x01.", 0x82)] {
            assert_eq!(parse(data).unwrap_err(), PickleError::Unsupported { opcode, at: 2 + usize::from(opcode != 0x82) });
        }
    }

    #[test]
    fn memo_fetches_share_instead_of_doubling() {
        // Each step builds (prev, prev): 2^60 leaves if copied, one node per step here.
        let mut data = b"\x80\x02N".to_vec();
        for _ in 0..60 {
            data.extend_from_slice(b"q\x00h\x00\x86");
        }
        data.push(b'.');
        let p = parse(&data).unwrap();
        assert_eq!(p.nodes.len(), 60);
    }

    #[test]
    fn a_million_nested_tuples_read_and_drop_without_recursing() {
        let mut data = b"\x80\x02".to_vec();
        data.push(b']');
        for _ in 0..1_000_000 {
            data.extend_from_slice(b"\x85"); // wrap the top in a 1-tuple
        }
        data.push(b'.');
        let p = parse(&data).unwrap();
        assert_eq!(p.nodes.len(), 1_000_001);
        drop(p);
    }

    #[test]
    fn stack_floods_and_mark_towers_are_refused() {
        let mut nones = b"\x80\x02".to_vec();
        nones.extend(std::iter::repeat_n(b'N', MAX_STACK + 1));
        assert_eq!(parse(&nones).unwrap_err(), PickleError::TooDeep(MAX_STACK));
        let mut marks = b"\x80\x02".to_vec();
        marks.extend(std::iter::repeat_n(b'(', MAX_MARK_DEPTH + 1));
        assert_eq!(parse(&marks).unwrap_err(), PickleError::TooDeep(MAX_MARK_DEPTH));
    }

    #[test]
    fn declared_lengths_beyond_the_data_allocate_nothing() {
        assert_eq!(parse(b"\x80\x02X\xff\xff\xff\xffab.").unwrap_err(), PickleError::Truncated(7));
        assert_eq!(parse(b"\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xff.").unwrap_err(), PickleError::Truncated(11));
    }

    #[test]
    fn short_tuples_and_empty_stacks_are_errors_not_panics() {
        for data in [&b"\x80\x02R."[..], b"\x80\x02\x86.", b"\x80\x02t.", b"\x80\x02(\x85.", b"\x80\x02.", b"\x80\x02K\x01", b"\x80\x02h\x05."] {
            assert!(parse(data).is_err(), "{data:?}");
        }
    }
}
