import Foundation
import PaellaCore
import Testing

/// How a process learns that it is one rank of an MPI job, and what loading MPI says when it cannot.
@Suite("MPI library")
struct MPILibraryTests {
    /// The launchers' variables, as `mpirun` (Open MPI), Hydra/Slurm PMI and `srun` set them; `sbatch` alone sets
    /// SLURM_NTASKS in the batch script, which runs once and must not start MPI.
    @Test func detectsLaunchers() {
        #expect(MPILaunch.detect([:]) == nil)
        #expect(MPILaunch.detect(["OMPI_COMM_WORLD_SIZE": "1"]) == nil)  // -np 1 trains as one process
        func launch(_ environment: [String: String]) -> String? {
            MPILaunch.detect(environment).map { "\($0.size) \($0.variable)" }
        }
        #expect(launch(["OMPI_COMM_WORLD_SIZE": "2"]) == "2 OMPI_COMM_WORLD_SIZE")
        #expect(launch(["PMI_SIZE": "3"]) == "3 PMI_SIZE")
        #expect(launch(["SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4"]) == "4 SLURM_STEP_NUM_TASKS")
        #expect(MPILaunch.detect(["SLURM_NTASKS": "4"]) == nil)
    }

    /// PAELLA_MPI naming a library that is not MPI (zlib, which the package links anyway) is refused by name.
    @Test func refusesALibraryThatIsNotMPI() {
        #expect(throws: MPISetupError.missingSymbol(path: "libz.so.1", symbol: "MPI_Init")) {
            try MPILibrary.load(["PAELLA_MPI": "libz.so.1"])
        }
        #expect(MPISetupError.notFound(tried: ["libmpi.so.40"]).description.contains("started by an MPI launcher"))
    }

    /// With Debian's Open MPI installed, the library loads (without MPI_Init) and names itself.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/mpirun"), "Open MPI is not installed"))
    func loadsOpenMPI() throws {
        let library = try MPILibrary.load([:])
        #expect(library.version.contains("Open MPI"), "\(library.version)")
    }
}
