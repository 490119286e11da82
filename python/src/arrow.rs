//! Tables in and out of Python through the Arrow PyCapsule interface
//! (`__arrow_c_stream__`), on `polars_arrow::ffi`: any object that exports an Arrow C
//! stream (a polars or pyarrow DataFrame, Table or RecordBatchReader) comes in without a
//! copy through pandas; results go out as an object polars (or pyarrow) imports.
//!
//! The only unsafe code of churnguard lives here (the library forbids it): taking the
//! stream out of the producer's capsule and reading it.

use polars::prelude::*;
use polars_arrow::array::StructArray;
use polars_arrow::datatypes::{ArrowDataType, Field as ArrowField};
use polars_arrow::ffi::{self, ArrowArrayStream, ArrowArrayStreamReader};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The capsule name the PyCapsule interface gives an `ArrowArrayStream`.
const STREAM: &std::ffi::CStr = c"arrow_array_stream";

/// Reads a table from any object with `__arrow_c_stream__` into one polars frame.
/// `what` names the argument in errors (`customers`).
pub fn frame_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<DataFrame> {
    if !obj.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a table with the Arrow PyCapsule interface (a polars or pyarrow DataFrame/Table), got {}",
            obj.get_type().name()?
        )));
    }
    let capsule = obj.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let ptr = capsule.pointer_checked(Some(STREAM))?;
    let bad =
        |e: PolarsError| PyValueError::new_err(format!("{what}: reading the Arrow stream: {e}"));
    // SAFETY: the capsule is named `arrow_array_stream`, so by the PyCapsule interface it
    // holds a valid `ArrowArrayStream`; it is moved out and an empty (released) stream
    // left in its place, so the capsule's destructor does not release it a second time.
    let stream = unsafe {
        std::ptr::replace(
            ptr.as_ptr().cast::<ArrowArrayStream>(),
            ArrowArrayStream::empty(),
        )
    };
    // SAFETY: `stream` is a valid stream that this reader now owns.
    let mut reader = unsafe { ArrowArrayStreamReader::try_new(Box::new(stream)) }.map_err(bad)?;
    let field = reader.field().clone();
    let mut df: Option<DataFrame> = None;
    // SAFETY: the reader's stream stays alive while it is read.
    while let Some(array) = unsafe { reader.next() } {
        let array = array.map_err(bad)?;
        let Some(batch) = array.as_any().downcast_ref::<StructArray>() else {
            return Err(PyValueError::new_err(format!(
                "{what}: the Arrow stream holds {:?}, not a table (struct) of columns",
                array.dtype()
            )));
        };
        let chunk = DataFrame::try_from(batch.clone()).map_err(bad)?;
        match &mut df {
            None => df = Some(chunk),
            Some(df) => {
                df.vstack_mut_owned(chunk).map_err(bad)?;
            }
        }
    }
    let mut df = match df {
        Some(df) => df,
        None => empty_frame(&field).map_err(bad)?,
    };
    df.rechunk_mut();
    Ok(df)
}

/// A frame without rows with the columns of a stream's (struct) field.
fn empty_frame(field: &ArrowField) -> PolarsResult<DataFrame> {
    let ArrowDataType::Struct(fields) = field.dtype() else {
        polars_bail!(ComputeError: "the stream's type {:?} is not a table (struct) of columns", field.dtype());
    };
    let columns = fields
        .iter()
        .map(|f| Column::new_empty(f.name.clone(), &DataType::from_arrow_field(f)))
        .collect();
    DataFrame::new(0, columns)
}

/// A table on its way to Python: exports itself once through `__arrow_c_stream__`
/// (`pl.DataFrame(obj)`, `pa.table(obj)`).
#[pyclass(module = "churnguard._native", name = "ArrowTable")]
pub struct ArrowTable {
    df: Option<DataFrame>,
}

impl ArrowTable {
    pub fn new(mut df: DataFrame) -> Self {
        df.rechunk_mut();
        ArrowTable { df: Some(df) }
    }
}

#[pymethods]
impl ArrowTable {
    /// The Arrow PyCapsule interface: the table as an `arrow_array_stream` capsule.
    /// `requested_schema` is not honoured (the interface allows ignoring it).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let df = self
            .df
            .take()
            .ok_or_else(|| PyValueError::new_err("this table was already exported once"))?;
        let level = CompatLevel::newest();
        let fields: Vec<ArrowField> = df
            .columns()
            .iter()
            .map(|c| c.field().to_arrow(level))
            .collect();
        let dtype = ArrowDataType::Struct(fields);
        let batches: Vec<PolarsResult<Box<dyn polars_arrow::array::Array>>> = if df.width() == 0 {
            Vec::new()
        } else {
            df.iter_chunks(level, false)
                .map(|batch| {
                    let len = batch.len();
                    StructArray::try_new(dtype.clone(), len, batch.into_arrays(), None)
                        .map(|a| a.boxed())
                })
                .collect()
        };
        let field = ArrowField::new(PlSmallStr::EMPTY, dtype, false);
        let stream = ffi::export_iterator(Box::new(batches.into_iter()), field);
        PyCapsule::new_with_value(py, stream, STREAM)
    }
}
