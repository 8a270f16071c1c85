//! A dataset's rows in memory, typed by column: numbers (integers or floats) and
//! categories. Read from CSV or Parquet, or built row by row (a SQL pull); kept as
//! Parquet, the one stored form.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// At most this many columns in a dataset.
pub const MAX_COLUMNS: usize = 256;
/// At most this many distinct values in a categorical column.
pub const MAX_LEVELS: usize = 1_000;
/// A column name: 1 to 64 characters, none of them a control character.
pub const MAX_NAME: usize = 64;
/// Integers beyond ±2⁵³ would lose digits as the numbers statistics are made of.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A code of a categorical column for a missing value.
pub const MISSING: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int,
    Float,
    /// Text or booleans: a value among a set of levels.
    Category,
}

/// What may be shown of a column: its name and type, never its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

#[derive(Clone, Debug)]
pub enum Data {
    /// Missing values are NaN.
    Num(Vec<f64>),
    /// Codes into `levels`; [`MISSING`] for a missing value.
    Cat {
        codes: Vec<u32>,
        levels: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub data: Data,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub rows: usize,
    pub columns: Vec<Column>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

fn err(message: impl Into<String>) -> DataError {
    DataError(message.into())
}

pub fn check_column_name(name: &str) -> Result<(), DataError> {
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(err(format!(
            "bad column name {name:?}: 1 to {MAX_NAME} characters, no control characters"
        )));
    }
    Ok(())
}

impl Table {
    pub fn info(&self) -> Vec<ColumnInfo> {
        (self.columns.iter())
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                kind: c.kind,
            })
            .collect()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A CSV file with a header row; column types are inferred from every row.
    pub fn from_csv(bytes: &[u8]) -> Result<Table, DataError> {
        let format = arrow_csv::reader::Format::default().with_header(true);
        let (schema, _) = format
            .infer_schema(std::io::Cursor::new(bytes), None)
            .map_err(|e| err(format!("cannot read the CSV file: {e}")))?;
        let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
            .with_format(format)
            .with_batch_size(64 * 1024)
            .build(std::io::Cursor::new(bytes))
            .map_err(|e| err(format!("cannot read the CSV file: {e}")))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("cannot read the CSV file: {e}")))?;
        Self::from_batches(&batches)
    }

    /// A Parquet file.
    pub fn from_parquet(bytes: bytes::Bytes) -> Result<Table, DataError> {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| err(format!("cannot read the Parquet file: {e}")))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("cannot read the Parquet file: {e}")))?;
        Self::from_batches(&batches)
    }

    fn from_batches(batches: &[RecordBatch]) -> Result<Table, DataError> {
        let Some(first) = batches.first() else {
            return Err(err("the file has no rows"));
        };
        let schema = first.schema();
        if schema.fields().len() > MAX_COLUMNS {
            return Err(err(format!("more than {MAX_COLUMNS} columns")));
        }
        let mut builders = Vec::new();
        for field in schema.fields() {
            check_column_name(field.name())?;
            let kind = match field.data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => ColumnType::Int,
                DataType::Float32 | DataType::Float64 => ColumnType::Float,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => {
                    ColumnType::Category
                }
                // A column of nothing but empty cells.
                DataType::Null => ColumnType::Category,
                other => {
                    return Err(err(format!(
                        "column {:?} has type {other}: only integers, floats, text and booleans",
                        field.name()
                    )));
                }
            };
            builders.push(ColumnBuilder::new(field.name(), kind));
        }
        for batch in batches {
            for (builder, array) in builders.iter_mut().zip(batch.columns()) {
                builder.push_array(array)?;
            }
        }
        Self::build(builders)
    }

    fn build(builders: Vec<ColumnBuilder>) -> Result<Table, DataError> {
        let columns: Vec<Column> = builders.into_iter().map(ColumnBuilder::finish).collect();
        let mut names = std::collections::HashSet::new();
        if let Some(c) = columns.iter().find(|c| !names.insert(c.name.as_str())) {
            return Err(err(format!("two columns are named {:?}", c.name)));
        }
        let rows = columns.first().map_or(0, Column::len);
        if rows == 0 {
            return Err(err("the dataset has no rows"));
        }
        Ok(Table { rows, columns })
    }

    /// The one stored form of a dataset.
    pub fn to_parquet(&self) -> Vec<u8> {
        let fields: Vec<Field> = (self.columns.iter())
            .map(|c| {
                let t = match c.kind {
                    ColumnType::Int => DataType::Int64,
                    ColumnType::Float => DataType::Float64,
                    ColumnType::Category => DataType::Utf8,
                };
                Field::new(&c.name, t, true)
            })
            .collect();
        let arrays: Vec<ArrayRef> = (self.columns.iter())
            .map(|c| -> ArrayRef {
                match (&c.data, c.kind) {
                    (Data::Num(v), ColumnType::Int) => Arc::new(Int64Array::from_iter(
                        v.iter().map(|x| (!x.is_nan()).then_some(*x as i64)),
                    )),
                    (Data::Num(v), _) => Arc::new(Float64Array::from_iter(
                        v.iter().map(|x| (!x.is_nan()).then_some(*x)),
                    )),
                    (Data::Cat { codes, levels }, _) => Arc::new(StringArray::from_iter(
                        codes
                            .iter()
                            .map(|&k| (k != MISSING).then(|| levels[k as usize].as_str())),
                    )),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .expect("columns of one length");
        let mut out = Vec::new();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props))
                .expect("a valid schema");
        writer.write(&batch).expect("writes to memory");
        writer.close().expect("writes to memory");
        out
    }
}

impl Column {
    pub fn len(&self) -> usize {
        match &self.data {
            Data::Num(v) => v.len(),
            Data::Cat { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds a column value by value (the rows of a SQL pull) or array by array.
pub struct ColumnBuilder {
    name: String,
    kind: ColumnType,
    nums: Vec<f64>,
    codes: Vec<u32>,
    levels: Vec<String>,
    index: HashMap<String, u32>,
}

impl ColumnBuilder {
    pub fn new(name: &str, kind: ColumnType) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            nums: Vec::new(),
            codes: Vec::new(),
            levels: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn push_num(&mut self, v: Option<f64>) -> Result<(), DataError> {
        let v = v.unwrap_or(f64::NAN);
        if v.is_infinite() || (self.kind == ColumnType::Int && v.abs() > MAX_EXACT_INT) {
            return Err(err(format!(
                "column {:?} holds {v}, beyond what statistics can use exactly",
                self.name
            )));
        }
        self.nums.push(v);
        Ok(())
    }

    pub fn push_level(&mut self, v: Option<&str>) -> Result<(), DataError> {
        let code = match v {
            None => MISSING,
            Some(level) => match self.index.get(level) {
                Some(&code) => code,
                None => {
                    if self.levels.len() == MAX_LEVELS {
                        return Err(err(format!(
                            "column {:?} has more than {MAX_LEVELS} distinct values: \
                             a categorical column needs few levels",
                            self.name
                        )));
                    }
                    let code = self.levels.len() as u32;
                    self.levels.push(level.to_owned());
                    self.index.insert(level.to_owned(), code);
                    code
                }
            },
        };
        self.codes.push(code);
        Ok(())
    }

    fn push_array(&mut self, array: &ArrayRef) -> Result<(), DataError> {
        macro_rules! nums {
            ($t:ty) => {
                for v in array.as_primitive::<$t>().iter() {
                    self.push_num(v.map(|x| x as f64))?;
                }
            };
        }
        match array.data_type() {
            DataType::Int8 => nums!(Int8Type),
            DataType::Int16 => nums!(Int16Type),
            DataType::Int32 => nums!(Int32Type),
            DataType::Int64 => nums!(Int64Type),
            DataType::UInt8 => nums!(UInt8Type),
            DataType::UInt16 => nums!(UInt16Type),
            DataType::UInt32 => nums!(UInt32Type),
            DataType::UInt64 => nums!(UInt64Type),
            DataType::Float32 => nums!(Float32Type),
            DataType::Float64 => nums!(Float64Type),
            DataType::Boolean => {
                for v in array.as_boolean().iter() {
                    self.push_level(v.map(|b| if b { "true" } else { "false" }))?;
                }
            }
            DataType::Utf8 => {
                for v in array.as_string::<i32>().iter() {
                    self.push_level(v)?;
                }
            }
            DataType::LargeUtf8 => {
                for v in array.as_string::<i64>().iter() {
                    self.push_level(v)?;
                }
            }
            DataType::Utf8View => {
                for v in array.as_string_view().iter() {
                    self.push_level(v)?;
                }
            }
            DataType::Null => {
                for _ in 0..array.len() {
                    self.push_level(None)?;
                }
            }
            other => unreachable!("checked above: {other}"),
        }
        Ok(())
    }

    pub fn finish(self) -> Column {
        let data = match self.kind {
            ColumnType::Category => Data::Cat {
                codes: self.codes,
                levels: self.levels,
            },
            _ => Data::Num(self.nums),
        };
        Column {
            name: self.name,
            kind: self.kind,
            data,
        }
    }
}

/// A table from columns built value by value (checked: names, equal lengths).
pub fn from_builders(builders: Vec<ColumnBuilder>) -> Result<Table, DataError> {
    if builders.is_empty() || builders.len() > MAX_COLUMNS {
        return Err(err(format!("a dataset has 1 to {MAX_COLUMNS} columns")));
    }
    for b in &builders {
        check_column_name(&b.name)?;
    }
    Table::build(builders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_typed_and_round_trip_through_parquet() {
        let csv = b"age,sex,weight,smoker\n34,f,61.5,true\n51,m,,false\n,f,70.25,\n";
        let t = Table::from_csv(csv).unwrap();
        assert_eq!(t.rows, 3);
        let kinds: Vec<_> = t.info().into_iter().map(|c| (c.name, c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("age".into(), ColumnType::Int),
                ("sex".into(), ColumnType::Category),
                ("weight".into(), ColumnType::Float),
                ("smoker".into(), ColumnType::Category),
            ]
        );
        let back = Table::from_parquet(t.to_parquet().into()).unwrap();
        assert_eq!(back.info(), t.info());
        let Data::Num(age) = &back.column("age").unwrap().data else {
            panic!()
        };
        assert_eq!(age[..2], [34.0, 51.0]);
        assert!(age[2].is_nan());
        let Data::Cat { codes, levels } = &back.column("smoker").unwrap().data else {
            panic!()
        };
        assert_eq!(levels, &["true", "false"]);
        assert_eq!(codes, &[0, 1, MISSING]);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(Table::from_csv(b"").is_err());
        let e = Table::from_csv(b"a,a\n1,2\n").unwrap_err();
        assert!(e.0.contains("two columns are named \"a\""), "{e}");
        let e = Table::from_parquet(bytes::Bytes::from_static(b"not parquet")).unwrap_err();
        assert!(e.0.contains("Parquet"), "{e}");
        let mut many = String::from("id\n");
        for i in 0..=MAX_LEVELS {
            many.push_str(&format!("x{i}\n"));
        }
        let e = Table::from_csv(many.as_bytes()).unwrap_err();
        assert!(e.0.contains("distinct values"), "{e}");
    }
}
