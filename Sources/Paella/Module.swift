@_exported import PaellaCore
@_exported import PaellaIO
@_exported import PaellaModels
