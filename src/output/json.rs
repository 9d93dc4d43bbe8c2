//! `--output-json` records: one object per line, written key by key straight into the
//! output buffer, with pwru's omitempty rules (zero numbers and empty strings are left out).

/// Writes the keys of one JSON object into a string; `end` closes it.
pub struct JsonObject<'a> {
    buf: &'a mut String,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    /// Opens an object at the end of `buf`.
    pub fn begin(buf: &'a mut String) -> Self {
        buf.push('{');
        Self { buf, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_str(self.buf, key);
        self.buf.push(':');
    }

    /// `"key":"value"`, left out when `value` is empty.
    pub fn str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.key(key);
            push_str(self.buf, value);
        }
    }

    /// `"key":value`, left out when zero.
    pub fn num(&mut self, key: &str, value: impl itoa::Integer + Default + PartialEq) {
        if value != Default::default() {
            self.always_num(key, value);
        }
    }

    /// `"key":value`, even when zero.
    pub fn always_num(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        super::text::push_dec(self.buf, value);
    }

    /// `"key":[a,b,...]`.
    pub fn nums<T: itoa::Integer + Copy>(&mut self, key: &str, values: &[T]) {
        self.key(key);
        self.buf.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            super::text::push_dec(self.buf, *v);
        }
        self.buf.push(']');
    }

    /// `"key":{...}` (present even when empty); close it with [`JsonObject::end`].
    pub fn object(&mut self, key: &str) -> JsonObject<'_> {
        self.key(key);
        JsonObject::begin(self.buf)
    }

    /// `"key":[...]` (present even when empty); close it with [`JsonArray::end`].
    pub fn array(&mut self, key: &str) -> JsonArray<'_> {
        self.key(key);
        self.buf.push('[');
        JsonArray {
            buf: self.buf,
            empty: true,
        }
    }

    /// Closes the object.
    pub fn end(self) {
        self.buf.push('}');
    }
}

/// Writes the elements of one JSON array of objects; `end` closes it.
pub struct JsonArray<'a> {
    buf: &'a mut String,
    empty: bool,
}

impl JsonArray<'_> {
    /// Opens the next element, an object; close it with [`JsonObject::end`].
    pub fn object(&mut self) -> JsonObject<'_> {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        JsonObject::begin(self.buf)
    }

    /// Closes the array.
    pub fn end(self) {
        self.buf.push(']');
    }
}

/// Appends `s` as a JSON string, escaped as serde_json does (`\"`, `\\`, `\b \f \n \r \t`,
/// other control characters as `\u00XX`; everything else as is).
pub fn push_str(buf: &mut String, s: &str) {
    buf.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        buf.push_str(&s[plain..i]);
        plain = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.push_str("\\u00");
            buf.push(HEX[usize::from(b >> 4)] as char);
            buf.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            buf.push_str(escape);
        }
    }
    buf.push_str(&s[plain..]);
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote \" and \\ backslash".into(),
            "(struct sk_buff){\n\t.len = 60,\r\n}".into(),
            "ü → 😀 \u{7f} \u{2028}".into(),
        ];
        samples.push((0u8..0x80).map(char::from).collect());
        for s in samples {
            let mut ours = String::new();
            push_str(&mut ours, &s);
            assert_eq!(ours, serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn objects_leave_out_empty_values() {
        let mut buf = String::from("x");
        let mut obj = JsonObject::begin(&mut buf);
        obj.str("a", "");
        obj.num("n", 0u32);
        obj.str("s", "v");
        obj.always_num("t", 0u64);
        obj.nums("cb", &[0u32, 7]);
        obj.object("empty").end();
        let mut inner = obj.object("tuple");
        inner.num("sport", 80u16);
        inner.end();
        obj.end();
        assert_eq!(
            buf,
            r#"x{"s":"v","t":0,"cb":[0,7],"empty":{},"tuple":{"sport":80}}"#
        );
    }
}
