@_exported import PaellaCore
@_exported import PaellaIO
