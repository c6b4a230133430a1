import Testing
@testable import Paella

