//! Services that plug into a node from above (Global is one): each is
//! kept here by its type, so the kernel holds them without knowing them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

/// A node's services, one per type.
#[derive(Default)]
pub(crate) struct Services {
    map: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Services {
    /// Installs `service`, replacing one of the same type.
    pub(crate) fn insert<T: Any + Send + Sync>(&self, service: Arc<T>) {
        self.map.write().insert(TypeId::of::<T>(), service);
    }

    /// The service of type `T`, if installed.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let any = self.map.read().get(&TypeId::of::<T>())?.clone();
        any.downcast::<T>().ok()
    }
}
