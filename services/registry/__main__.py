from services.registry.service import RegistryService

RegistryService.main()
