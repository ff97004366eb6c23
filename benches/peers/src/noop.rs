//! Connections that cost nothing, for pinpool and each peer it is compared
//! with, so a benchmark measures only the pools' own work. Shared by this
//! crate's binaries and the criterion benchmarks (through `#[path]`).

use std::convert::Infallible;
use std::future::Ready;

/// pinpool's blocking manager: a closure opening nothing.
pub type Noop = fn() -> Result<(), std::io::Error>;

/// Opens a connection that is nothing.
pub fn noop() -> Result<(), std::io::Error> {
    Ok(())
}

/// pinpool's async manager: a closure opening nothing.
pub type AsyncNoop = fn() -> Ready<Result<(), std::io::Error>>;

/// Opens a connection that is nothing, at once.
pub fn async_noop() -> Ready<Result<(), std::io::Error>> {
    std::future::ready(Ok(()))
}

/// r2d2's manager of the no-op connection.
pub struct R2d2Noop;

impl r2d2::ManageConnection for R2d2Noop {
    type Connection = ();
    type Error = std::io::Error;
    fn connect(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// bb8's manager of the no-op connection.
pub struct Bb8Noop;

impl bb8::ManageConnection for Bb8Noop {
    type Connection = ();
    type Error = Infallible;
    async fn connect(&self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn is_valid(&self, _: &mut ()) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// deadpool's manager of the no-op connection.
pub struct DeadpoolNoop;

impl deadpool::managed::Manager for DeadpoolNoop {
    type Type = ();
    type Error = Infallible;
    async fn create(&self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn recycle(
        &self,
        _: &mut (),
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

/// qp's manager of the no-op connection.
pub struct QpNoop;

#[async_trait::async_trait]
impl qp::resource::Manage for QpNoop {
    type Output = ();
    type Error = Infallible;
    async fn try_create(&self) -> Result<(), Infallible> {
        Ok(())
    }
}
