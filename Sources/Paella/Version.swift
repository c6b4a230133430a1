/// The version of this package, printed by `paella info` and written into generated images' metadata.
public enum PaellaVersion {
    public static let string = "0.1.0-dev"
}
