import Testing
@testable import PaellaIO

