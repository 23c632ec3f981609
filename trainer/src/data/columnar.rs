//! Parquet files, read row by row with the `parquet` crate's record API (no Arrow dependency).

use std::path::Path;

use parquet::file::reader::SerializedFileReader;
use parquet::record::Field;

use super::{DataError, Row, Value};

/// Every row of a Parquet file.
pub(super) fn read_parquet(path: &Path) -> Result<Vec<Row>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::try_from(file)
        .map_err(|e| DataError::format(path, format!("expected a Parquet file: {e}")))?;
    let mut rows = Vec::new();
    for (i, row) in reader.into_iter().enumerate() {
        let row = row.map_err(|e| DataError::format(path, format!("row {}: {e}", i + 1)))?;
        rows.push(row.get_column_iter().map(|(name, field)| (name.clone(), value(field))).collect());
    }
    Ok(rows)
}

fn value(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(x) => Value::Int(i64::from(*x)),
        Field::Short(x) => Value::Int(i64::from(*x)),
        Field::Int(x) => Value::Int(i64::from(*x)),
        Field::Long(x) => Value::Int(*x),
        Field::UByte(x) => Value::Int(i64::from(*x)),
        Field::UShort(x) => Value::Int(i64::from(*x)),
        Field::UInt(x) => Value::Int(i64::from(*x)),
        Field::ULong(x) => i64::try_from(*x).map_or(Value::UInt(*x), Value::Int),
        Field::Float16(x) => Value::Float(f64::from(f32::from(*x))),
        Field::Float(x) => Value::Float(f64::from(*x)),
        Field::Double(x) => Value::Float(*x),
        Field::Str(s) => Value::Str(s.clone()),
        Field::ListInternal(list) => Value::List(list.elements().iter().map(value).collect()),
        Field::Decimal(_) => Value::Other("a decimal".into()),
        Field::Bytes(_) => Value::Other("binary data".into()),
        Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => Value::Other("a date or time".into()),
        Field::Group(_) => Value::Other("a struct".into()),
        Field::MapInternal(_) => Value::Other("a map".into()),
    }
}
