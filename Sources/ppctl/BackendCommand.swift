import ArgumentParser
import Balancer
import Datapath

struct BackendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backend", abstract: "Add or delete a backend of a service.", subcommands: [Add.self, Delete.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a backend to a service.")
        @OptionGroup var instance: InstanceOptions
        @Argument(help: ArgumentHelp("The service.", valueName: "VIP:PORT")) var vip: String
        @Argument(help: ArgumentHelp("The backend.", valueName: "IP:PORT[,weight=N]")) var backend: String

        func validate() throws {
            _ = try validated { try Endpoint(parsing: vip) }
            _ = try validated { try Backend(parsing: backend) }
        }

        func run() throws {
            let v = try validated { try Endpoint(parsing: vip) }, b = try validated { try Backend(parsing: backend) }
            let inst = try instance.instance()
            try ppctl.run { try inst.withLock(needsPins: true) { try Controller(ServiceTables(Maps(inst))).addBackend(v, b) } }
            print("added backend \(b.endpoint) to \(v)")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a backend from a service (its established connections keep flowing).")
        @OptionGroup var instance: InstanceOptions
        @Argument(help: ArgumentHelp("The service.", valueName: "VIP:PORT")) var vip: String
        @Argument(help: ArgumentHelp("The backend.", valueName: "IP:PORT")) var backend: String

        func validate() throws {
            _ = try validated { try Endpoint(parsing: vip) }
            _ = try validated { try Endpoint(parsing: backend) }
        }

        func run() throws {
            let v = try validated { try Endpoint(parsing: vip) }, b = try validated { try Endpoint(parsing: backend) }
            let inst = try instance.instance()
            try ppctl.run { try inst.withLock(needsPins: true) { try Controller(ServiceTables(Maps(inst))).deleteBackend(v, b) } }
            print("deleted backend \(b) from \(v)")
        }
    }
}
