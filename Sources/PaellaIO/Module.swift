@_exported import PaellaCore
